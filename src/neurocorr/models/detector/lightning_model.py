"""Self-supervised training and evaluation of the equivariant keypoint detector.

Training: each batch of crops becomes two views (``augment.make_views``: random homographies with
zoom and the full rotation range on zero-padded canvases, photometric changes drawn per view),
made on the device inside ``step_rng()``. Loss = score-map loss (anchor = warp(score(view 1)),
positive = score(view 2); ``conf/loss/peaky_cosim.yaml`` or the SSIM/MSE triplets) + ``pad_weight``
x the mean squared score on padding and the band along its edges (padding edges and image borders
are not keypoints) + ``desc_weight`` x the descriptor triplet (hardest negative in the batch) at
keypoints of view 1 and their warps + ``ori_weight`` x the disagreement of the orientation head
with the rotation of the warp (+ ``rank_weight`` x the repeat cross-entropy of the score at fixed Harris
peaks, with ``peaks_from="harris"``).

Validation/test: fixed pairs with known homographies; the test scores this model and the classical
baselines with the same code (``evaluation.py``).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from neurocorr.errors import ConfigError
from neurocorr.models.base import NeurocorrModule
from neurocorr.models.detector.augment import Photometric, WarpRanges, make_views
from neurocorr.models.detector.baselines import RESPONSE_MAPS
from neurocorr.models.detector.descriptor import PolarDescriptor
from neurocorr.models.detector.evaluation import DetectorEvaluation
from neurocorr.models.detector.homography import ESTIMATORS
from neurocorr.models.detector.keypoints import (PYRAMID_NMS, SCALE_SELECTIONS, Keypoints, describe_levels,
                                                detect_keypoints, detect_per_level, detect_pyramid, keypoint_angles,
                                                level_scores_at, rank_by, run_levels, sample_maps, score_peaks)
from neurocorr.models.detector.loss import (PeakyRepeatability, descriptor_triplet, hardest_in_batch_triplet,
                                            mutual_match_correct, repeat_bce, repeat_targets, ring_offsets,
                                            shifted_negative_triplet)
from neurocorr.models.detector.alignment import MatchAlignment, MatchSteps
from neurocorr.models.detector.relocation import MatchRelocation
from neurocorr.models.detector.repeatability import Repeatability, matching_accuracy, select_keypoints
from neurocorr.models.detector.torch_model import EquivariantDetector
from neurocorr.ops.affine_shape import AffineShape
from neurocorr.ops.geometry import homography_grid, warp_mask, warp_points
from neurocorr.ops.peaks import square_max


PEAK_SOURCES = ("score", "harris")
RANK_TARGETS = ("repeat", "match")
SUBPIXEL_MAPS = ("peaks", "harris_log")


class DetectorModule(NeurocorrModule):
    """Args (all keyword):
        net: the equivariant network. loss: score-map loss (default :class:`PeakyRepeatability`).
        descriptor: polar descriptor sampler.
        desc_weight, desc_margin, desc_top_k: descriptor loss weight, margin, keypoints per view.
        desc_mining: ``hardest`` (hardest negative of the batch) or ``roll`` (the same point in
            another image of the batch).
        desc_shift_px, desc_shift_margin: > 0: each descriptor must also be closer to its positive than, by
            the margin, to the other view's descriptors ``desc_shift_px`` px off the true position (8 directions;
            ``loss.shifted_negative_triplet``), so that it tells a keypoint from its neighbours; 0 = off.
        ori_weight: weight of the orientation-consistency loss. pad_weight: weight of the padding /
            border suppression loss. score_weight: weight of both score-map terms (score loss and
            padding loss); 0 freezes the score (with ``net.harris_skip`` it stays the Harris ranking,
            its head's last layer at zero) and trains the orientation and the descriptor only.
        peaks_from: where keypoint positions come from: ``score`` (the score map's peaks) or ``harris``
            (the peaks of ``net.harris_score``, the untrained Harris score; the network's score then only
            ranks them, read at each peak). ``harris`` needs ``net.harris_skip`` and one scale.
        rank_weight, rank_sigma, rank_top_k, rank_candidates: the ranking loss (with ``peaks_from="harris"``):
            the ``rank_candidates`` strongest Harris peaks of each view (the weak ones too, so that none of
            them is left unlabelled to rise at test time) are labelled by how close the other view's
            ``rank_top_k`` strongest peaks come to their warp (``loss.repeat_targets``, ``rank_sigma`` px),
            and the score at them learns that by binary cross-entropy (``loss.repeat_bce``); 0 = off.
        rank_target: the ranking loss's label: ``repeat`` (how close the other view's peaks come) or ``match``
            (that, times whether the peak's mutual nearest neighbour by descriptor among the other view's
            candidates lies within ``match_threshold`` px of its warp: ``loss.mutual_match_correct``, the
            evaluation's matching rule; the score then learns which corners are found again *and* matched).
        warp, photometric: keyword ranges of :class:`WarpRanges` and :class:`Photometric`.
        border: px band (and erosion of the validity masks) left out of the loss.
        top_k, nms_window, threshold, detect_border: keypoint extraction at evaluation.
        subpixel: peak refinement, true/``2d`` (2-D quadratic fit), ``1d`` (along x and y), false/``none``.
        subpixel_map: the map detected keypoints are refined on: ``peaks`` (the map they are found on) or
            ``harris_log`` (with ``peaks_from="harris"``: Harris in logs, from ``net.harris_score_and_log``, whose
            peaks are the Harris score's but whose strong corners are not flattened by the sigmoid; positions
            only, the keypoints and their order are the same).
        scales: image pyramid of the test-time detection (``[1.0]`` = one scale).
        pyramid_nms: how ``scales`` > 1 level are searched: ``scale_space`` (one keypoint per structure, at the
            level that answers most) or ``per_level`` (each level's own peaks, ranked together as ORB ranks its
            levels; a structure may be kept at several levels; ``keypoints.detect_per_level``).
        level_dedupe_px: with ``per_level``, a level's points within this many px of a finer level's point are
            dropped (0 = keep them).
        snap_finest: pyramid keypoints move to the finest level's own peak beside them (1-px localisation).
        scale_select: the pyramid level a keypoint is described in: ``score`` (its highest score) or
            ``laplacian`` (the characteristic scale: the largest scale-normalised Laplacian of Gaussian).
        describe_scales: empty = one descriptor per keypoint ``(B, K, D)``, read at its detection level;
            else every keypoint is described at each of these pyramid levels ``(B, K, L, D)`` and
            matched by the best level pair (zoom between images; ``keypoints.describe_levels``).
        affine_sigma, affine_max_ratio: > 0: at inference (``detect``, ``describe``) the descriptor's rings
            follow each point's affine shape (``ops.affine_shape``: the second-moment matrix in a window of
            ``affine_sigma`` px of each described level, axis ratio at most ``affine_max_ratio``), as
            Harris-Affine normalises its regions; 0 = circular rings. Training samples circles.
        eval_settings: (top_k, px) pairs for repeatability; the first is the validation metric.
        relocate_px: with ``describe_scales``, each match's zoomed-in point is found again on Harris of its image
            resized to the other point's scale, within this many px of that map, before a homography is
            estimated (``relocation.py``; evaluation and ``predict.py``); 0 = the detected points.
        align_px, align_window, align_min_ncc: > 0: then each match's second point is aligned to its first by
            their image patches (``alignment.py``: affine Lucas-Kanade on the normalised correlation of
            ``2 align_window + 1`` px patches at the level pair the descriptors matched at), kept where it moves
            at most ``align_px`` level px and the correlation reaches ``align_min_ncc``; 0 = off.
        align_drop: the matches the alignment cannot align are left out of the homography (a photometric check:
            most wrong matches fail it).
        guided_px: > 0: the homography is estimated twice, the second time from the matches made again among the
            pairs the first estimate maps within this many px (``guided.py``; evaluation, for every method alike,
            and ``predict.py``); 0 = once, from the mutual nearest neighbours.
        match_threshold, homography_top_k, ransac_px, ransac_method, homography_trials, baselines,
        model_descriptor_baselines, figure_pairs, dedupe_px, compare_resamples: see :class:`DetectorEvaluation`.
        **base: optimizer, scheduler, monitor, ... (see NeurocorrModule).
    """

    #: evaluation pairs carry these; training batches carry ``image`` (crops) instead
    required_batch_keys = ("image1", "image2", "H")

    def __init__(
        self, *, net: EquivariantDetector, loss: Optional[nn.Module] = None, descriptor: Optional[PolarDescriptor] = None,
        desc_weight: float = 1.0, desc_margin: float = 1.0, desc_top_k: int = 64, desc_mining: str = "hardest",
        desc_shift_px: float = 0.0, desc_shift_margin: float = 0.2,
        ori_weight: float = 0.1, pad_weight: float = 1.0, score_weight: float = 1.0, peaks_from: str = "score",
        rank_weight: float = 0.0, rank_sigma: float = 1.0, rank_top_k: int = 64, rank_candidates: int = 512,
        rank_target: str = "repeat", warp: Optional[Mapping[str, Any]] = None, photometric: Optional[Mapping[str, Any]] = None,
        border: int = 4, top_k: int = 2000, nms_window: int = 3, threshold: float = 0.0, detect_border: int = 4,
        subpixel: bool | str = True, subpixel_map: str = "peaks", scales: Sequence[float] = (1.0,),
        pyramid_nms: str = "scale_space", level_dedupe_px: float = 0.0,
        snap_finest: bool = False, scale_select: str = "score", describe_scales: Sequence[float] = (),
        affine_sigma: float = 0.0, affine_max_ratio: float = 4.0,
        eval_settings: Sequence[Sequence[float]] = ((300, 3.0), (60, 1.0)), match_threshold: float = 3.0,
        homography_top_k: int = 1000, ransac_px: float = 3.0, ransac_method: str = "usac", homography_trials: int = 1,
        relocate_px: float = 1.5, align_px: float = 2.0, align_window: int = 8, align_min_ncc: float = 0.7,
        align_drop: bool = True, guided_px: float = 0.0,
        baselines: Sequence[str] = ("sift", "orb", "akaze", "harris", "hessian"),
        model_descriptor_baselines: Sequence[str] = ("harris", "hessian"), figure_pairs: int = 3,
        dedupe_px: float = 0.0, compare_resamples: int = 2000, **base: Any,
    ) -> None:
        super().__init__(**base)
        if desc_mining not in ("hardest", "roll"):
            raise ConfigError(f"model.desc_mining must be 'hardest' or 'roll', got {desc_mining!r}")
        if not scales or any(not 0 < float(s) <= 1 for s in scales):
            raise ConfigError(f"model.scales must be a non-empty list of factors in (0, 1], got {list(scales)}")
        self.net = net
        self.loss_fn = loss if loss is not None else PeakyRepeatability()
        self.descriptor = descriptor if descriptor is not None else PolarDescriptor()
        self.desc_weight, self.desc_margin, self.desc_top_k = desc_weight, desc_margin, desc_top_k
        self.desc_mining, self.ori_weight, self.pad_weight = desc_mining, ori_weight, pad_weight
        if desc_shift_px < 0 or desc_shift_margin <= 0:
            raise ConfigError(f"model.desc_shift_px must be >= 0 (0 = off) and model.desc_shift_margin > 0, got "
                              f"{desc_shift_px}, {desc_shift_margin}")
        self.desc_shift_px, self.desc_shift_margin = float(desc_shift_px), float(desc_shift_margin)
        self.score_weight = float(score_weight)
        if peaks_from not in PEAK_SOURCES:
            raise ConfigError(f"model.peaks_from must be one of {PEAK_SOURCES}, got {peaks_from!r}")
        if peaks_from == "harris" and net.harris_skip is None:
            raise ConfigError("model.peaks_from=harris needs model.net.harris_skip > 0 (and model.net.handcrafted)")
        if peaks_from == "harris" and [float(x) for x in scales] != [1.0]:
            raise ConfigError(f"model.peaks_from=harris detects at one scale: set model.scales=[1.0], got {list(scales)}")
        if rank_weight < 0 or (rank_weight > 0 and peaks_from != "harris"):
            raise ConfigError(f"model.rank_weight must be >= 0 and needs model.peaks_from=harris (the ranking loss "
                              f"trains the score that ranks fixed Harris peaks), got {rank_weight}, {peaks_from!r}")
        if rank_sigma <= 0 or rank_top_k < 1 or rank_candidates < rank_top_k:
            raise ConfigError(f"model.rank_sigma must be > 0 px and 1 <= model.rank_top_k <= model.rank_candidates, got "
                              f"{rank_sigma}, {rank_top_k}, {rank_candidates}")
        if rank_target not in RANK_TARGETS:
            raise ConfigError(f"model.rank_target must be one of {RANK_TARGETS}, got {rank_target!r}")
        self.peaks_from, self.rank_weight, self.rank_target = peaks_from, float(rank_weight), rank_target
        if subpixel_map not in SUBPIXEL_MAPS or (subpixel_map == "harris_log" and peaks_from != "harris"):
            raise ConfigError(f"model.subpixel_map must be one of {SUBPIXEL_MAPS} (harris_log with model.peaks_from=harris: "
                              f"it refines Harris peaks), got {subpixel_map!r} with peaks_from={peaks_from!r}")
        self.subpixel_map = subpixel_map
        self.rank_sigma, self.rank_top_k, self.rank_candidates = float(rank_sigma), int(rank_top_k), int(rank_candidates)
        self.warp_ranges = WarpRanges(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in (warp or {}).items()})
        self.photometric = Photometric(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                                          for k, v in (photometric or {}).items()})
        self.border, self.top_k, self.nms_window = border, top_k, nms_window
        self.threshold, self.detect_border, self.subpixel = threshold, detect_border, subpixel
        self.scales = [float(s) for s in scales]
        if pyramid_nms not in PYRAMID_NMS or level_dedupe_px < 0:
            raise ConfigError(f"model.pyramid_nms must be one of {PYRAMID_NMS} and model.level_dedupe_px >= 0, got "
                              f"{pyramid_nms!r}, {level_dedupe_px}")
        if pyramid_nms == "per_level" and snap_finest:
            raise ConfigError("model.snap_finest is for model.pyramid_nms=scale_space; per_level refines each "
                              "point on its own level (model.level_dedupe_px keeps the finest of a structure's points)")
        self.pyramid_nms, self.level_dedupe_px = pyramid_nms, float(level_dedupe_px)
        self.snap_finest = bool(snap_finest)
        if scale_select not in SCALE_SELECTIONS:
            raise ConfigError(f"model.scale_select must be one of {SCALE_SELECTIONS}, got {scale_select!r}")
        self.scale_select = scale_select
        if any(not 0 < float(s) <= 1 for s in describe_scales):
            raise ConfigError(f"model.describe_scales must be factors in (0, 1], got {list(describe_scales)}")
        self.describe_scales = [float(s) for s in describe_scales]
        if affine_sigma < 0 or affine_max_ratio < 1:
            raise ConfigError(f"model.affine_sigma must be >= 0 px (0 = circular rings) and model.affine_max_ratio >= 1, "
                              f"got {affine_sigma}, {affine_max_ratio}")
        if affine_sigma > 0 and not self.describe_scales and self.scales != [1.0]:
            raise ConfigError("model.affine_sigma describes points on each level's own image: with model.scales "
                              f"{self.scales} set model.describe_scales too (or model.affine_sigma=0)")
        self.affine = AffineShape(affine_sigma, affine_max_ratio) if affine_sigma > 0 else None
        if ransac_method not in ESTIMATORS:
            raise ConfigError(f"model.ransac_method must be one of {sorted(ESTIMATORS)}, got {ransac_method!r}")
        if isinstance(homography_trials, bool) or not isinstance(homography_trials, int) or homography_trials < 1:
            raise ConfigError(f"model.homography_trials must be an integer >= 1, got {homography_trials!r}")
        if isinstance(relocate_px, bool) or not isinstance(relocate_px, (int, float)) or not 0 <= relocate_px < 100:
            raise ConfigError(f"model.relocate_px must be a number of px in [0, 100) (0 = off), got {relocate_px!r}")
        self.relocate_px = float(relocate_px)
        if isinstance(align_px, bool) or not isinstance(align_px, (int, float)) or not 0 <= align_px < 100:
            raise ConfigError(f"model.align_px must be a number of px in [0, 100) (0 = off), got {align_px!r}")
        if isinstance(align_window, bool) or not isinstance(align_window, int) or align_window < 2:
            raise ConfigError(f"model.align_window must be an integer half-width >= 2 px, got {align_window!r}")
        if isinstance(align_min_ncc, bool) or not isinstance(align_min_ncc, (int, float)) or not -1 <= align_min_ncc < 1:
            raise ConfigError(f"model.align_min_ncc must be a correlation in [-1, 1), got {align_min_ncc!r}")
        if not isinstance(align_drop, bool):
            raise ConfigError(f"model.align_drop must be true or false, got {align_drop!r}")
        self.alignment = MatchAlignment(self.describe_scales or [1.0], align_window, align_px, align_min_ncc,
                                        drop=align_drop) if align_px > 0 else None
        if isinstance(guided_px, bool) or not isinstance(guided_px, (int, float)) or not 0 <= guided_px < 100:
            raise ConfigError(f"model.guided_px must be a number of px in [0, 100) (0 = off), got {guided_px!r}")
        if dedupe_px < 0:
            raise ConfigError(f"model.dedupe_px must be >= 0 px (0 = every keypoint counts), got {dedupe_px}")
        if isinstance(compare_resamples, bool) or not isinstance(compare_resamples, int) or compare_resamples < 0:
            raise ConfigError(f"model.compare_resamples must be an integer >= 0 (0 = no interval), got {compare_resamples!r}")
        self.eval_settings = [(int(k), float(t)) for k, t in eval_settings]
        k0, t0 = self.eval_settings[0]
        self.headline = f"rep_{k0}_{t0:g}px"
        self.val_rep = Repeatability(k0, t0)
        self.val_match = MeanMetric()
        self.match_threshold = float(match_threshold)
        self.evaluation = DetectorEvaluation(
            eval_settings=self.eval_settings, match_threshold=match_threshold, homography_top_k=homography_top_k,
            ransac_px=ransac_px, ransac_method=ransac_method, homography_trials=homography_trials, baselines=baselines, model_descriptor_baselines=model_descriptor_baselines,
            figure_pairs=figure_pairs, dedupe_px=dedupe_px, compare_resamples=compare_resamples, guided_px=float(guided_px))

    def missing_batch_keys(self, keys: Any) -> list[str]:
        """Crops (``image``) or pairs (``image1``, ``image2``, ``H``): what a batch of either lacks."""
        return [] if "image" in set(keys) else super().missing_batch_keys(keys)

    def check_data(self, datamodule: Any) -> None:
        grey = getattr(datamodule, "grey", None)
        if grey is not None and (1 if grey else 3) != self.net.in_channels:
            raise ConfigError(f"model.net.in_channels={self.net.in_channels} but data.grey={grey} gives "
                              f"{1 if grey else 3}-channel images: set them to agree")

    def validation_metrics(self) -> list[str]:
        return ["val/loss", f"val/{self.headline}", "val/match_acc", "val/rep_match"]

    # ------------------------------------------------------------------ inference

    def forward(self, image: torch.Tensor):
        return self.net(image)

    def detect(self, image: torch.Tensor) -> tuple[Keypoints, torch.Tensor, torch.Tensor]:
        """Keypoints ``(B, K)``, descriptors (``(B, K, D)``, or ``(B, K, L, D)`` with ``describe_scales``)
        and the score map ``(B, 1, H, W)`` of images ``(B, C, H, W)`` in [0, 1], over the pyramid ``scales``."""
        levels = run_levels(self.net, image, self.describe_scales, scored=self.scales) if self.describe_scales else []
        described = dict(zip(self.describe_scales, levels))  # levels the network has run on already
        if self.scales == [1.0]:
            out = described[1.0][1] if 1.0 in described else self.net(image)  # reuse the described level
            if self.subpixel_map == "harris_log":  # one Harris response: the peaks' map and the fits' map
                where, refine_on = self.net.harris_score_and_log(image)
            else:
                where, refine_on = self.peak_map(image, out.score), None
            kp = detect_keypoints(where, out.orientation, self.top_k, self.threshold, self.nms_window, self.detect_border,
                                  self.subpixel, refine_on)
            if self.peaks_from == "harris":
                kp = rank_by(kp, out.score)
            score = out.score
            desc = None if levels else self.descriptor(out.features, kp.xy, kp.angle, self.point_shapes(image, kp.xy))
        elif self.pyramid_nms == "per_level":
            own = [described[s] if s in described else run_levels(self.net, image, [s])[0] for s in self.scales]
            size = tuple(image.shape[-2:])
            kp, desc, _ = detect_per_level(own, [self.peak_map(level, out.score) for level, out in own], size,
                                           self.top_k, self.threshold, self.nms_window, self.detect_border,
                                           self.subpixel, self.level_dedupe_px, None if levels else self.descriptor)
            score = torch.cat(level_scores_at([out for _, out in own], size), 1).amax(1, keepdim=True)
        else:
            describe = None if levels else self.descriptor  # described below at every level instead
            shared = [described[s] for s in self.scales] if all(s in described for s in self.scales) else None
            kp, desc, score = detect_pyramid(self.net, describe, image, self.scales, self.top_k, self.threshold,
                                             self.nms_window, self.detect_border, self.subpixel, self.snap_finest,
                                             self.scale_select, levels=shared)
        if levels:
            desc = describe_levels(levels, self.descriptor, kp.xy, tuple(image.shape[-2:]), self.affine)
        return kp, desc, score

    def match_relocation(self, detector: str = "model") -> Optional[MatchRelocation]:
        """How matches described by this model's descriptor are relocated before a homography (``relocate_px``
        > 0 with multi-level descriptors), on the response of the ``detector`` that found the points: this
        model's on Harris, the map its score starts from, a baseline's on its own; None = off."""
        if self.relocate_px <= 0 or not self.describe_scales:
            return None
        response = RESPONSE_MAPS["harris" if detector == "model" else detector]
        return MatchRelocation(self.describe_scales, response, self.relocate_px)

    def match_steps(self, detector: str = "model") -> Optional[MatchSteps]:
        """What is done to matches described by this model's descriptor before a homography: relocation
        (:meth:`match_relocation`) then alignment by the image patches (``align_px`` > 0); None = neither."""
        steps = [step for step in (self.match_relocation(detector), self.alignment) if step is not None]
        return MatchSteps(steps) if steps else None

    def peak_map(self, image: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """The map ``(B, 1, H, W)`` keypoints are found on, for images ``(B, C, H, W)`` whose network score
        is ``score``: that score, or with ``peaks_from="harris"`` the network's untrained Harris score."""
        return self.net.harris_score(image) if self.peaks_from == "harris" else score

    def describe(self, image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        """This model's descriptors of given points ``xy`` ``(B, K, 2)`` in images ``(B, C, H, W)``
        (a detector without a descriptor borrows them): at full resolution in the orientation of
        the orientation head, or at each of ``describe_scales``."""
        if self.describe_scales:
            return describe_levels(run_levels(self.net, image, self.describe_scales, scored=()), self.descriptor, xy,
                                   tuple(image.shape[-2:]), self.affine)
        out = self.net(image, with_score=False)
        return self.descriptor(out.features, xy, keypoint_angles(out.orientation, xy), self.point_shapes(image, xy))

    def point_shapes(self, image: torch.Tensor, xy: torch.Tensor) -> Optional[torch.Tensor]:
        """Affine shapes ``(B, K, 2, 2)`` of points ``xy`` ``(B, K, 2)`` in images ``(B, C, H, W)`` with
        ``affine_sigma`` > 0 (the descriptor's rings become ellipses), else None (circular rings)."""
        return None if self.affine is None else self.affine(image, xy)

    # ------------------------------------------------------------------ data

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        batch = dict(batch)
        if "image" in batch:  # training crops -> two views, made on the device with the step's seed
            with self.step_rng():
                batch.update(make_views(batch.pop("image").float() / 255.0, self.warp_ranges, self.photometric))
        else:
            for key in ("image1", "image2"):
                batch[key] = batch[key].float() / 255.0
            batch["mask1"] = torch.ones_like(batch["image1"][:, :1])
            batch["mask2"] = warp_mask(batch["mask1"], batch["H"].float(), batch["image2"].shape[-2:])
        return batch

    # ------------------------------------------------------------------ loss

    def _eroded(self, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` ``(B, 1, H, W)`` eroded by ``border`` px, with the image's own ``border`` band off."""
        if self.border <= 0:
            return mask
        m = torch.zeros_like(mask)
        b = self.border
        m[..., b:-b, b:-b] = 1
        return m * -square_max(-mask, 2 * b + 1)

    def compute_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        image1, image2, H = batch["image1"], batch["image2"], batch["H"].float()
        if image1.shape[0] < 2:
            raise ConfigError("the detector's losses need data.batch_size >= 2 (negatives come from the batch)")
        out1, out2 = self.net(image1), self.net(image2)
        keep1, keep2 = self._eroded(batch["mask1"]), self._eroded(batch["mask2"])
        where1 = self.peak_map(image1, out1.score).detach()  # view 2's is only needed by the ranking loss
        result: dict[str, torch.Tensor] = {}
        loss = out1.score.new_zeros(())
        if self.score_weight > 0:
            loss = loss + self.score_weight * self._score_losses(out1.score, out2.score, H, keep1, keep2, result)
        if self.rank_weight > 0:
            loss = loss + self.rank_weight * self._rank_loss(out1, out2, where1,
                                                             self.peak_map(image2, out2.score).detach(), H, keep1, keep2, result)
        if self.desc_weight > 0 or self.ori_weight > 0:
            loss = loss + self._descriptor_losses(out1, out2, where1, H, keep1, keep2, result)
        result["loss"] = loss
        return result

    def _score_losses(self, score1: torch.Tensor, score2: torch.Tensor, H: torch.Tensor, keep1: torch.Tensor,
                      keep2: torch.Tensor, result: dict[str, torch.Tensor]) -> torch.Tensor:
        """Score-map loss between warp(score1) and score2 ``(B, 1, H, W)`` + ``pad_weight`` x the padding loss."""
        grid = homography_grid(H, score1.shape[-2:], score2.shape[-2:]).to(score1.dtype)  # one grid: score and mask
        warped = F.grid_sample(torch.cat([score1, keep1], 1), grid, align_corners=True)
        anchor, seen = warped[:, :1], warped[:, 1:] > 0.999
        mask = keep2 * seen.to(keep2.dtype)
        kp_loss = self.loss_fn(anchor, score2, score2.roll(1, 0), mask)
        result["kp_loss"] = kp_loss
        if self.pad_weight <= 0:
            return kp_loss
        # padding, its edges and the image border band: no keypoints there
        pad = torch.cat([(score1**2 * (1 - keep1)), (score2**2 * (1 - keep2))])
        pad_loss = pad.flatten(1).sum(1).div((1 - torch.cat([keep1, keep2])).flatten(1).sum(1).clamp(min=1)).mean()
        result["pad_loss"] = pad_loss
        return kp_loss + self.pad_weight * pad_loss

    def _rank_loss(self, out1: Any, out2: Any, where1: torch.Tensor, where2: torch.Tensor,
                   H: torch.Tensor, keep1: torch.Tensor, keep2: torch.Tensor, result: dict[str, torch.Tensor]) -> torch.Tensor:
        """Repeat BCE of the network outputs' scores ``(B, 1, H, W)`` at the ``rank_candidates`` peaks of each
        view's position map ``where*`` (inside its mask, 2 px clear of the mask's edge, whose cut makes false
        peaks), each labelled by the nearest of the other view's ``rank_top_k`` strongest peaks
        (``loss.repeat_targets``), in both directions; with ``rank_target="match"`` also by whether its
        descriptor's mutual nearest neighbour among the other view's candidates is its correspondent."""
        score1, score2 = out1.score, out2.score
        H_inv = torch.linalg.inv(H.double()).to(H.dtype)
        views = []
        for where, keep in ((where1, keep1), (where2, keep2)):
            xy, _, valid = score_peaks(where * keep, self.rank_candidates, 0.0, self.nms_window, self.border, self.subpixel)
            inner = -square_max(-keep, 5)
            valid = valid & (sample_maps(inner, xy)[..., 0] > 0.999)
            views.append((xy, valid, valid & (valid.cumsum(1) <= self.rank_top_k)))  # peaks come sorted by strength
        (xy1, valid1, top1), (xy2, valid2, top2) = views
        seen1 = valid1 & (sample_maps(keep2, warp_points(xy1, H))[..., 0] > 0.999)
        seen2 = valid2 & (sample_maps(keep1, warp_points(xy2, H_inv))[..., 0] > 0.999)
        target1 = repeat_targets(xy1, xy2, top2, H, self.rank_sigma)
        target2 = repeat_targets(xy2, xy1, top1, H_inv, self.rank_sigma)
        if self.rank_target == "match":
            with torch.no_grad():
                d1 = self.descriptor(out1.features, xy1, keypoint_angles(out1.orientation, xy1))
                d2 = self.descriptor(out2.features, xy2, keypoint_angles(out2.orientation, xy2))
            ok1, ok2 = mutual_match_correct(d1, d2, seen1, seen2, xy1, xy2, H, self.match_threshold)
            target1, target2 = target1 * ok1.to(target1.dtype), target2 * ok2.to(target2.dtype)
            seen = torch.cat([seen1, seen2], 1)
            result["rank_matched"] = (torch.cat([ok1, ok2], 1) & seen).sum() / seen.sum().clamp(min=1)
        at1, at2 = sample_maps(score1, xy1.round())[..., 0], sample_maps(score2, xy2.round())[..., 0]
        rank_loss = repeat_bce(torch.cat([at1, at2], 1), torch.cat([target1, target2], 1), torch.cat([seen1, seen2], 1))
        result["rank_loss"] = rank_loss
        return rank_loss

    def _descriptor_losses(self, out1: Any, out2: Any, where1: torch.Tensor, H: torch.Tensor, keep1: torch.Tensor,
                           keep2: torch.Tensor, result: dict[str, torch.Tensor]) -> torch.Tensor:
        score1 = where1 * keep1
        kp = detect_keypoints(score1, out1.orientation, self.desc_top_k, 0.0, self.nms_window, self.border)
        xy2 = warp_points(kp.xy, H)
        valid = kp.valid & (sample_maps(keep2, xy2)[..., 0] > 0.999) & (sample_maps(keep1, kp.xy)[..., 0] > 0.999)
        angle2 = keypoint_angles(out2.orientation, xy2)
        total = out1.score.new_zeros(())
        if self.ori_weight > 0:  # the head's angle in view 2 = the angle in view 1 turned by the warp
            step = torch.stack([kp.angle.cos(), kp.angle.sin()], -1)
            turned = warp_points(kp.xy + step, H) - xy2
            expected = torch.atan2(turned[..., 1], turned[..., 0])
            ori_loss = ((1 - torch.cos(angle2 - expected)) * valid).sum() / valid.sum().clamp(min=1)
            total = total + self.ori_weight * ori_loss
            result["ori_loss"] = ori_loss
        if self.desc_weight > 0:
            d_a = self.descriptor(out1.features, kp.xy, kp.angle)
            d_p = self.descriptor(out2.features, xy2, angle2)
            if self.desc_mining == "hardest":
                desc_loss = hardest_in_batch_triplet(d_a, d_p, valid, kp.xy, self.desc_margin)
            else:  # the same points in another image of the batch, read in its own orientation
                d_n = self.descriptor(out2.features.roll(1, 0), xy2, keypoint_angles(out2.orientation.roll(1, 0), xy2))
                desc_loss = descriptor_triplet(d_a, d_p, d_n, valid, self.desc_margin)
            if self.desc_shift_px > 0:  # the same view 2 read a few px off: must be farther than the positive
                off = ring_offsets(self.desc_shift_px).to(xy2)
                k, s = xy2.shape[1], off.shape[0]
                shifted = (xy2[:, :, None] + off).flatten(1, 2)
                d_s = self.descriptor(out2.features, shifted, angle2.repeat_interleave(s, 1)).unflatten(1, (k, s))
                shift_loss = shifted_negative_triplet(d_a, d_p, d_s, valid, self.desc_shift_margin)
                desc_loss = desc_loss + shift_loss
                result["shift_loss"] = shift_loss
            total = total + self.desc_weight * desc_loss
            result["desc_loss"] = desc_loss
        return total

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.compute_loss(batch)
        for name, value in losses.items():
            self.log_train_mean(f"train/{name}", value, batch["image1"].shape[0], prog_bar=name == "loss")
        return losses["loss"]

    # ------------------------------------------------------------------ validation

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        n = batch["image1"].shape[0]
        if n >= 2 and batch["image1"].shape[-2:] == batch["image2"].shape[-2:]:
            self.log("val/loss", self.compute_loss(batch)["loss"], on_epoch=True, prog_bar=True, batch_size=n)
        (kp1, d1, _), (kp2, d2, _) = self.detect(batch["image1"]), self.detect(batch["image2"])
        size1, size2 = batch["image1"].shape[-2:], batch["image2"].shape[-2:]
        k0 = self.eval_settings[0][0]
        for b in range(n):
            v1, v2 = kp1.valid[b], kp2.valid[b]
            xy1, s1, xy2, s2, H = kp1.xy[b][v1], kp1.score[b][v1], kp2.xy[b][v2], kp2.score[b][v2], batch["H"][b].double()
            self.val_rep.update(xy1, s1, xy2, s2, H, size1, size2)
            i1 = select_keypoints(xy1.double(), s1, H, size1, size2, k0)
            i2 = select_keypoints(xy2.double(), s2, torch.linalg.inv(H), size2, size1, k0)
            m = matching_accuracy(xy1[i1], d1[b][v1][i1], xy2[i2], d2[b][v2][i2], H, self.match_threshold)
            self.val_match.update(m["matching_accuracy"].to(xy1.device))

    def on_validation_epoch_end(self) -> None:
        """Logs the repeatability, the matching accuracy and their mean (``val/rep_match``: a checkpoint
        is chosen for both detection and description)."""
        if self.val_rep.pairs == 0:
            return
        rep, match = self.val_rep.compute(), self.val_match.compute().float()
        self.log(f"val/{self.headline}", rep, prog_bar=True)
        self.log("val/match_acc", match, prog_bar=True)
        self.log("val/rep_match", (rep + match) / 2)
        self.val_rep.reset()
        self.val_match.reset()

    # ------------------------------------------------------------------ test: model + baselines, one table

    def on_test_epoch_start(self) -> None:
        self.evaluation.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluation.add_batch(self, batch)

    def on_test_epoch_end(self) -> None:
        self.evaluation.finish(self)

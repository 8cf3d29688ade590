"""The detector's test: this model and the classical baselines scored by the same code on pairs
with known homographies (``repeatability.evaluate_pair``), with detection times, one table per
sequence and on average (printed, ``<run_dir>/detector_eval.csv``, per pair in
``detector_eval_pairs.csv``), the model minus each baseline over the same pairs with a paired bootstrap
interval (``comparison.py``; printed, ``detector_eval_vs_baselines.csv`` and ``test/vs_<baseline>/<metric>``
with ``_low`` and ``_high``), and figures of the *worst* pairs (lowest model repeatability). Under DDP each
process scores its share of the pairs and the table is made from all processes' rows (``_gather``).

SIFT, ORB and AKAZE use their own descriptors; the baselines in ``model_descriptor_baselines``
(Harris, Hessian: detectors without a descriptor) are described by this model's descriptor, read
at their points in the orientation of the model's orientation head; their matches go through the model's
match steps before the homography as the model's do: relocation (``relocate_px``, ``relocation.py``, each on
its own detector's response) and alignment by the image patches (``align_px``, ``alignment.py``; with
``align_drop`` the matches it cannot align are left out). With ``guided_px`` > 0 every method, with its own
descriptor or the model's, has its matches made again under its first homography (``guided.py``) and is scored
on the second estimate.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import torch

from neurocorr.distributed import gather_lists, unique_by, world_size
from neurocorr.models.detector.baselines import run_baseline
from neurocorr.models.detector.comparison import format_comparison, paired_bootstrap
from neurocorr.models.detector.figures import plot_matches, plot_score_maps
from neurocorr.models.detector.matching import match_mnn
from neurocorr.models.detector.repeatability import Relocate, evaluate_pair
from neurocorr.models.detector.table import METRICS, format_table, summarise, write_csv
from neurocorr.ops.geometry import warp_points


class DetectorEvaluation:
    """Collects rows and figure panels over a test epoch (see the module docstring).

    Args:
        eval_settings: (top_k, px) repeatability settings. match_threshold: px for a correct match.
        homography_top_k: best keypoints per image matched for the homography. ransac_px: RANSAC threshold.
        ransac_method: the estimator, a key of ``homography.ESTIMATORS``. homography_trials: orders of the
            matches estimated from; a pair's corner error is their median (``homography.steady_corner_error``).
        baselines: classical detectors scored beside the model.
        model_descriptor_baselines: those of them described with the model's descriptor.
        figure_pairs: the worst pairs drawn. dedupe_px: see ``repeatability.select_keypoints``.
        compare_resamples: bootstrap draws of the pairs for the model-minus-baseline intervals (0 = the
            differences alone).
        guided_px: > 0: every method's homography estimated again from its matches made again under the first
            estimate, within this many px (``guided.py``); 0 = off.
    """

    def __init__(self, *, eval_settings: Sequence[tuple[int, float]], match_threshold: float = 3.0,
                 homography_top_k: int = 1000, ransac_px: float = 3.0, ransac_method: str = "usac", homography_trials: int = 1,
                 baselines: Sequence[str] = (), model_descriptor_baselines: Sequence[str] = (), figure_pairs: int = 3, dedupe_px: float = 0.0,
                 compare_resamples: int = 2000, guided_px: float = 0.0) -> None:
        self.eval_settings = list(eval_settings)
        self.match_threshold, self.homography_top_k, self.ransac_px = match_threshold, homography_top_k, ransac_px
        self.ransac_method, self.homography_trials = ransac_method, homography_trials
        self.baselines, self.model_descriptor_baselines = list(baselines), set(model_descriptor_baselines)
        self.figure_pairs, self.dedupe_px = figure_pairs, dedupe_px
        self.compare_resamples, self.guided_px = compare_resamples, guided_px
        self.headline = f"rep_{self.eval_settings[0][0]}_{self.eval_settings[0][1]:g}px"
        self.rows: list[dict] = []
        self.panels: list[dict] = []

    def reset(self) -> None:
        self.rows, self.panels = [], []

    def _model_descriptors(self, module: Any, image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        return module.describe(image[None], xy[None].to(image.dtype).to(image.device))[0].cpu()

    def _match_steps(self, module: Any, method: str, image1: torch.Tensor, image2: torch.Tensor) -> Optional[Relocate]:
        """What is done to ``method``'s matches in this pair before the homography, as ``module.match_steps``
        sets it (relocation, alignment; None: nothing, or a method with its own descriptor)."""
        if method != "model" and method not in self.model_descriptor_baselines:
            return None
        steps = module.match_steps(method)
        if steps is None:
            return None
        first, second = image1.detach().float().cpu(), image2.detach().float().cpu()

        def apply(xy1: torch.Tensor, xy2: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor):
            out1, out2, keep = steps(first, second, xy1, xy2, d1, d2)
            return out1[keep], out2[keep]

        return apply

    def add_batch(self, module: Any, batch: dict[str, Any]) -> None:
        results, times = [], []
        for key in ("image1", "image2"):
            start = time.perf_counter()
            results.append(module.detect(batch[key]))
            times.append((time.perf_counter() - start) * 1000 / batch[key].shape[0])
        (kp1, desc1, score1), (kp2, desc2, _) = results
        size1, size2 = tuple(batch["image1"].shape[-2:]), tuple(batch["image2"].shape[-2:])
        for b in range(kp1.xy.shape[0]):
            H = batch["H"][b].double().cpu()
            v1, v2 = kp1.valid[b], kp2.valid[b]
            feats = {"model": (
                {"xy": kp1.xy[b][v1].double().cpu(), "score": kp1.score[b][v1].cpu(), "desc": desc1[b][v1].cpu()},
                {"xy": kp2.xy[b][v2].double().cpu(), "score": kp2.score[b][v2].cpu(), "desc": desc2[b][v2].cpu()})}
            ms = {"model": sum(times) / 2}
            for name in self.baselines:
                start = time.perf_counter()
                pair = [run_baseline(name, batch[key][b]) for key in ("image1", "image2")]
                ms[name] = (time.perf_counter() - start) * 1000 / 2  # detection (and own descriptor) only
                if name in self.model_descriptor_baselines:
                    for f, key in zip(pair, ("image1", "image2")):
                        f["desc"] = self._model_descriptors(module, batch[key][b], f["xy"])
                feats[name] = tuple(pair)
            sequence, index = str(batch["sequence"][b]), int(batch["pair"][b])
            for method, (f1, f2) in feats.items():
                row = evaluate_pair(f1, f2, H, size1, size2, self.eval_settings, self.eval_settings[0][0],
                                    self.match_threshold, self.dedupe_px, self.homography_top_k, self.ransac_px,
                                    self.ransac_method, self.homography_trials,
                                    self._match_steps(module, method, batch["image1"][b], batch["image2"][b]),
                                    guided_px=self.guided_px)
                self.rows.append({"method": method, "sequence": sequence, "pair": index, **row, "det_ms": ms[method]})
            self._keep_if_worst(batch, b, feats, H, score1[b], self.rows[-len(feats)][self.headline])

    def _keep_if_worst(self, batch: dict[str, Any], b: int, feats: dict, H: torch.Tensor, score: torch.Tensor,
                       value: float) -> None:
        if self.figure_pairs <= 0:
            return
        if len(self.panels) >= self.figure_pairs and value >= self.panels[-1]["value"]:
            return
        panel = {"image1": batch["image1"][b].cpu(), "image2": batch["image2"][b].cpu(), "score": score.cpu(),
                 "label": f"{batch['sequence'][b]} 1-{int(batch['pair'][b])} (rep {value:.2f})", "value": value,
                 "matches": {}, "keypoints": feats["model"][0]["xy"][:300]}
        for method in ("model", "sift"):
            if method in feats:
                f1, f2 = feats[method]
                m = match_mnn(f1["desc"].float(), f2["desc"].float())
                xy1, xy2 = f1["xy"][m.index[:, 0]], f2["xy"][m.index[:, 1]]
                correct = (warp_points(xy1, H) - xy2).norm(dim=-1) < self.match_threshold
                panel["matches"][method] = (xy1, xy2, correct)
        self.panels = self._worst(self.panels + [panel])

    def _worst(self, panels: list[dict]) -> list[dict]:
        """The ``figure_pairs`` panels of the lowest model repeatability."""
        return sorted(panels, key=lambda p: p["value"])[: self.figure_pairs]

    def _compare(self) -> list[dict]:
        """The model minus each baseline on the headline figures (``comparison.paired_bootstrap``)."""
        if not any(r["method"] != "model" for r in self.rows):
            return []
        metrics = [f"rep_{k}_{t:g}px" for k, t in self.eval_settings]
        if any("h_err" in r for r in self.rows):
            metrics += ["match_acc", "h_auc_3px"]
        return paired_bootstrap(self.rows, metrics, resamples=self.compare_resamples)

    def _gather(self) -> bool:
        """Under DDP: every process's rows and worst panels to every process, a pair that the sampler
        gave two processes (it pads the last round) counted once. A collective: all processes call it.
        Returns whether the run is distributed."""
        if world_size() == 1:
            return False
        self.rows = unique_by(gather_lists(self.rows), lambda r: (r["method"], r["sequence"], r["pair"]))
        self.panels = self._worst(unique_by(gather_lists(self.panels), lambda p: p["label"]))
        return True

    def finish(self, module: Any) -> None:
        sync = self._gather()  # distributed: every process logs the same figures; the sync only averages equal values
        if not self.rows:
            return
        summary = summarise(self.rows)
        for entry in summary:
            if entry["sequence"] != "average":
                continue
            prefix = "test/" if entry["method"] == "model" else f"test/{entry['method']}/"
            for key in METRICS:
                value = entry.get(key)
                if value is not None and value == value:
                    module.log(prefix + key, float(value), sync_dist=sync)
            rep, match = entry.get(self.headline), entry.get("match_acc")
            if rep is not None and match is not None and rep == rep and match == match:
                module.log(prefix + "rep_match", (float(rep) + float(match)) / 2, sync_dist=sync)  # what val/rep_match chose on
        comparison = self._compare()
        for entry in comparison:
            for suffix, key in (("", "difference"), ("_low", "low"), ("_high", "high")):
                if entry[key] == entry[key]:
                    module.log(f"test/vs_{entry['method']}/{entry['metric']}{suffix}", float(entry[key]), sync_dist=sync)
        trainer = module.trainer
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        print("\n" + format_table(summary), flush=True)
        path = write_csv(summary, module.run_dir / "detector_eval.csv")
        write_csv(self.rows, module.run_dir / "detector_eval_pairs.csv",
                  metrics=[k for k in self.rows[0] if k not in ("method", "sequence", "pair")],
                  keys=("sequence", "pair", "method"))
        print(f"[neurocorr] detector evaluation table: {path}", flush=True)
        module.log_file(path, "tables")
        if comparison:
            print("\n" + format_comparison(comparison), flush=True)
            module.log_file(write_csv(comparison, module.run_dir / "detector_eval_vs_baselines.csv",
                                      metrics=("pairs", "difference", "low", "high", "above"), keys=("method", "metric")),
                            "tables")
        for method in ("model", "sift"):
            panels = [{"image1": p["image1"], "image2": p["image2"], "xy1": p["matches"][method][0],
                       "xy2": p["matches"][method][1], "correct": p["matches"][method][2],
                       "label": f"{method} {p['label']}"} for p in self.panels if method in p["matches"]]
            if panels:
                module.log_figure(plot_matches(panels, title="worst pairs by model repeatability"), f"matches_{method}")
        if self.panels:
            module.log_figure(plot_score_maps([p["image1"] for p in self.panels], [p["score"] for p in self.panels],
                                              [p["keypoints"] for p in self.panels]), "score_maps")

"""DINO self-distillation: pretrain a backbone on unlabeled images (student + EMA teacher)."""

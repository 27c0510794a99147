"""Training: one model (loop), closed-form solvers, optimizers; many models at once (fused)."""

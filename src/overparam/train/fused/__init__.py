"""Many runs trained as one program (DESIGN.md "Speed: fused sweeps").

- ``layout``: which runs may share a program, and the bucketed, padded place of each member;
- ``nets``: the families (mlp, rff, linear) as stacked networks over one flat parameter leaf;
- ``optim``: SGD/Adam/AdamW elementwise over that leaf, per-member lr, weight decay, clipping;
- ``data``, ``evaluate``: the group's resident data, labels per member, metrics per member;
- ``engine``: ``train_group``, the loop; ``cuda``: the step captured as a CUDA graph;
- ``buffered``: the step (and its CUDA graph) of the conv and GPT engines, fed batch tensors;
- ``tiled``: one-hidden-layer MLPs side by side, a fixed handful of kernels per step (CUDA's choice);
- ``jagged``: the same layout through torch's grouped matmul (CUDA, bf16);
- ``functional``: any module of one shape (the user's own factories) through ``torch.func.vmap``.

docs/fused.md has the rules, the cost model and the measurements.
"""

from overparam.train.fused.engine import train_group

__all__ = ["train_group"]

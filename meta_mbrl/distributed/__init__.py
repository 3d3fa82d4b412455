"""Scaling out: torch.distributed data-parallel meta-training (:mod:`meta_mbrl.distributed.ddp`).

Import the submodules directly; this package imports nothing on its own, so optional extras stay optional.
"""

"""Target-model runtime: loading (``loading``), chat formats (``chat``), truncated activations (``activations``),
greedy/sampled generation (``generation``), pyvene steering (``steering``) and perplexity (``scoring``).

Submodules are imported explicitly (``from axbench_kedro.lm.steering import steered_generate``) so that importing
the package stays cheap.
"""

"""Bounds on physical quantities and work sizes, one place for every layer (docs/limits.md lists them all).

A value beyond a bound is refused with one line naming the bound; the bounds are far above any real system (the
largest TPU pod has 8,960 chips; the longest production contexts are ~10 million tokens), so they only stop
typos and hostile input from allocating terabytes or running for days. Work sizes (sweep rows, simulated steps,
tree nodes) have CLI overrides where a user can legitimately want more.
"""

MAX_CHIPS = 65_536                 # chips one configuration spans
MAX_BATCH = 1_048_576              # sequences decoded together
MAX_CONTEXT = 16_777_216           # tokens already in the KV cache (2^24)
MAX_K = 256                        # draft tokens per step
MAX_TREE_NODES = 4_096             # candidate-tree nodes (the tree is built node by node)
MAX_SIMULATED_STEPS = 10_000_000_000  # simulate --steps (at ~10^8 steps/s: under two minutes)
MAX_REQUEST_TOKENS = MAX_CONTEXT  # simulate --tokens: the N of an N-token request
MAX_OPTIMIZE_CONFIGURATIONS = 2_000_000  # optimize: configurations evaluated (~30k/s); --max-configurations lifts it
MAX_COST_RATIO = 1e6               # --c, --c-tiny, --verify-cost: cost relative to one target forward
MAX_FILTER_WIDTH = 1 << 20         # Tiny's top-m (vocabularies are below 2^20)

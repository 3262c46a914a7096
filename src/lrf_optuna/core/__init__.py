"""Pure data: plans, layer geometry, the cost model of replacement chains, batches."""

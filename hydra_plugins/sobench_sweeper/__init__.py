"""sobench's sweeper for `-m` sweeps (hydra/sweeper=sobench): Hydra's basic sweeper with one
summary of every job at the end (runners.sweeper). Hydra instantiates sweepers from the
`hydra_plugins` namespace package only, hence this package."""

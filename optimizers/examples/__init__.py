"""Small worked examples of the optimizer recipe (docs/adding_an_optimizer.md)."""

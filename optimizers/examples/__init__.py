"""Small worked examples of the optimizer recipe (README.md, "Adding an optimizer")."""

"""Service discovery: providers that produce target groups, and the manager that merges them."""

"""lpnb (exports are added once all modules exist)."""

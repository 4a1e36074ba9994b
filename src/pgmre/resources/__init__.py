"""Package data: the MNRE relation inventory and other small bundled resources."""

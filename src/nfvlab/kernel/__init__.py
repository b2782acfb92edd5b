"""Kernel recipes, builds, boot checks and the VM testbed (issue 14)."""

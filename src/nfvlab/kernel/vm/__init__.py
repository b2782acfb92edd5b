"""The VM testbed (``testbed: vm``): a recipe's kernel + a Debian root filesystem, under qemu."""

"""nfvlab: reproduce and extend the NFV systems of "Paving the Way for NFV"."""

__version__ = "0.1.0"

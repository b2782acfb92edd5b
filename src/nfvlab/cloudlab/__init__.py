"""CloudLab: the repository-based profile (``profile.py``), rendering it to an RSpec, the portal
APIs (Emulab XML-RPC with a user certificate, REST with a token) and turning a manifest into an
ssh inventory. See docs/cloudlab.md."""

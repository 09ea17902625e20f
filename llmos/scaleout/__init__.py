"""Scale-out: several engine replicas behind one endpoint. ``routing`` decides which replica serves
a request (least loaded, prefix affinity, power of two choices)."""

from llmos.scaleout.routing import POLICIES, Decision, ReplicaLoad, Router, prefix_hashes

__all__ = ["POLICIES", "Decision", "ReplicaLoad", "Router", "prefix_hashes"]

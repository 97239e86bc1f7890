"""Data-owner audits: do the weights spell out the owner's own training data?

An owner who knows the training set can test what a distribution test cannot: whether
stretches of the weights, cut into item-sized pieces, correlate with the owner's items
(correlated value encoding) or whether their signs spell the items' bytes (sign encoding),
whatever layout, order and offset the attacker chose. The null is the owner's held-out
items: an encoding favours the training items it encodes, generalization does not.
"""

from covertml.audit.owner import images  # noqa: F401  (registers)
from covertml.audit.owner.images import OwnerCorrelation, OwnerSign

__all__ = ["OwnerCorrelation", "OwnerSign"]

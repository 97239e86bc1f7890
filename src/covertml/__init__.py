"""covertml: models that remember too much -- attacks, countermeasures and audits.

Reproduces the white-box (LSB, correlated value, sign) and black-box (capacity abuse)
attacks of Song, Ristenpart and Shmatikov (CCS 2017) and the defences against them.
"""

__version__ = "0.1.0"

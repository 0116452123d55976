"""The routing policies' names, defined once: the router's settings, the operator's spec and the CRD's enum (a test
holds the CRD and the chart's values schema to this list) all take them from here."""

from __future__ import annotations

from typing import Literal, get_args

PolicyName = Literal["least-work", "least-loaded", "power-of-two", "round-robin"]
POLICY_NAMES: tuple[str, ...] = get_args(PolicyName)
DEFAULT_POLICY: PolicyName = "least-work"

"""STAC collection definitions (``iceye-grd``, ``iceye-slc``) shipped as package data.

Loaded with :mod:`importlib.resources` by :mod:`icecube_cloud.stac.collections`.
"""

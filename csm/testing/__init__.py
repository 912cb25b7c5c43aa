"""Helpers the tests run on the host: real servers standing in for third parties."""

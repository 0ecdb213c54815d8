"""Shared test helpers: tiny data written on the fly (no network, no ../shared), stage
runners, small models and system tricks. Tests import these modules; they never
import each other."""

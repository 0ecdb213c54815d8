"""Core ML: conversion with coremltools, and a NumPy reference runtime that executes
the saved model on any OS (``MLModel.predict`` exists only on macOS)."""

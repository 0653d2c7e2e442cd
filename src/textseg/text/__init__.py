"""Prompt template sets and noun extraction."""

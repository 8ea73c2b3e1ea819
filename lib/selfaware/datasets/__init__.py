"""Datasets: programmatic generators (no model needed), the papers' LLM-based generation recipe, and a
loader for the OpenAI chat JSONL format in which the authors published their data."""

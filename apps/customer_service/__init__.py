"""Retrieval-augmented support bot on Rasa: the action server answers from a knowledge base through core."""

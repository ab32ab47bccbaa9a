"""Small real data for the retrieval tests: 48 short support messages over 4 topics.

Each topic has 12 texts: the first 8 are for training, the last 4 for dev. Texts of one
topic are positives of each other; the topics share vocabulary ("card", "account",
"order") so that the base model does not already separate them perfectly.
"""

from __future__ import annotations

TOPICS: dict[str, list[str]] = {
    "card": [
        "My card was declined at the shop",
        "The payment with my debit card did not go through",
        "Why was my card rejected at checkout?",
        "I lost my credit card, please block it",
        "Someone stole my card, freeze it now",
        "How do I activate the new card you sent me?",
        "The card PIN does not work at the cash machine",
        "I need a replacement card, mine is broken",
        "My card got swallowed by the ATM",
        "Can I change the PIN of my card?",
        "The contactless payment with my card fails",
        "Please cancel my stolen credit card",
    ],
    "delivery": [
        "Where is my order? It has not arrived yet",
        "The parcel was delivered to the wrong address",
        "My package is late by a week",
        "How long does shipping take to Germany?",
        "The courier left my order at the door and it vanished",
        "Can I change the delivery address of my order?",
        "The tracking number of my parcel does not work",
        "My order arrived damaged in the box",
        "When will my package be shipped?",
        "The delivery driver never came today",
        "Can the parcel be left with a neighbour?",
        "Shipping is taking far too long for my order",
    ],
    "account": [
        "I forgot the password to my account",
        "How do I reset my login password?",
        "My account is locked after too many attempts",
        "I want to delete my account and all my data",
        "Can I change the email address on my account?",
        "The two-factor code never reaches my phone",
        "Someone else logged into my account",
        "How do I update my profile name?",
        "I cannot sign in to the app anymore",
        "The password reset link has expired",
        "Please close my account permanently",
        "My login keeps failing even with the right password",
    ],
    "refund": [
        "I want my money back for this order",
        "How do I return an item for a refund?",
        "The refund has not reached my card yet",
        "I was charged twice, please refund one payment",
        "Can I get a refund for a cancelled subscription?",
        "The product is faulty and I want a refund",
        "How long does a refund take to appear?",
        "Return the shoes and give me my money back",
        "My refund request was rejected, why?",
        "I returned the parcel weeks ago but got no refund",
        "Please reimburse the wrong charge on my account",
        "Is there a fee for returning an order?",
    ],
}


def labelled_split(split: str) -> tuple[list[str], list[str]]:
    """(texts, labels) of ``split`` ("train": 8 texts per topic, "dev": 4)."""
    part = slice(0, 8) if split == "train" else slice(8, 12)
    texts, labels = [], []
    for label, members in TOPICS.items():
        texts += members[part]
        labels += [label] * len(members[part])
    return texts, labels

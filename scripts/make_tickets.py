"""Generate the demo task this project owns: support tickets -> JSON.

Deterministic (seeded): varied templates, names, formats; some fields absent from a ticket,
whose correct value is null. Writes chat `messages` JSONL (the format fine-tuning tools use):
suites/data/tickets/train.jsonl (600) and holdout.jsonl (200), no ticket text in both, plus the
answer's JSON Schema. Run: python scripts/make_tickets.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "suites" / "data" / "tickets"
SYSTEM = (
    "Extract the support ticket into a JSON object with exactly these keys: customer_name, email, "
    "order_id, product, amount, category, urgency. category is one of billing, shipping, technical, "
    "account, returns; urgency is one of low, medium, high. amount is a number. Use null for anything "
    "the ticket does not state. Reply with the JSON object only."
)
FIRST = ["Maria", "James", "Aiko", "Liam", "Fatima", "Noah", "Elena", "Kwame", "Sofia", "Lucas", "Priya", "Omar",
         "Hannah", "Mateo", "Chloe", "Ivan", "Zara", "Daniel", "Mei", "Tomas", "Amara", "Felix", "Leila", "Jonas",
         "Nadia", "Ravi", "Greta", "Diego", "Yara", "Samuel", "Ingrid", "Kofi", "Lucia", "Arjun", "Freya", "Hugo"]
LAST = ["Garcia", "Smith", "Tanaka", "Okafor", "Novak", "Rossi", "Schmidt", "Haddad", "Johansson", "Silva", "Patel",
        "Kowalski", "Nguyen", "Dubois", "Mensah", "Lindqvist", "Moreau", "Costa", "Fischer", "Ali", "Brennan",
        "Petrov", "Yilmaz", "Andersen", "Kim", "Oliveira", "Murphy", "Sato", "Weber", "Ibrahim"]
DOMAINS = ["gmail.com", "outlook.com", "proton.me", "yahoo.com", "mail.de", "icloud.com", "fastmail.fm"]
PRODUCTS = ["wireless headphones", "standing desk", "coffee grinder", "4K monitor", "yoga mat", "mechanical keyboard",
            "air purifier", "hiking backpack", "smart watch", "electric kettle", "office chair", "USB-C hub",
            "robot vacuum", "espresso machine", "gaming mouse", "portable speaker", "desk lamp", "webcam",
            "blender", "e-reader", "phone case", "router", "sleeping bag", "tablet stand"]
CATEGORY_TEMPLATES = {
    "shipping": [
        "My order {order} for the {product} still hasn't arrived and the tracking page hasn't changed in a week.",
        "The {product} I ordered ({order}) was supposed to be delivered on Monday. Where is it?",
        "Tracking for {order} says delivered but there is no {product} at my door.",
        "Can you tell me when the {product} will ship? Order {order}.",
    ],
    "billing": [
        "I was charged {amount} twice for the {product}. Order {order}. Please refund the duplicate charge.",
        "My card shows a charge of {amount} for order {order} but I cancelled the {product} before it shipped.",
        "The invoice for {order} says {amount}, but the {product} was advertised cheaper. Please fix the price.",
        "Why was I billed {amount}? I never ordered a {product}.",
    ],
    "technical": [
        "The {product} from order {order} won't turn on anymore after the latest update.",
        "My {product} keeps disconnecting every few minutes. I bought it last month.",
        "The {product} makes a loud buzzing noise. Order {order}. Is this normal?",
        "I can't pair the {product} with my phone, the app just shows an error.",
    ],
    "account": [
        "I can't log in to my account, the password reset email never arrives.",
        "Please change the email on my account, I no longer use the old address.",
        "Someone else seems to have placed order {order} from my account. Please lock it.",
        "How do I delete my account? I don't want my data stored anymore.",
    ],
    "returns": [
        "I'd like to return the {product} (order {order}); it doesn't fit my space. I paid {amount}.",
        "The {product} arrived damaged. I want to send it back and get my {amount} refunded.",
        "How do I return the {product}? Order number {order}.",
        "The {product} is not what I expected. Can I still return it? It's been 20 days.",
    ],
}
URGENCY_PHRASES = {
    "high": ["This is urgent, please respond today!", "I need this fixed ASAP.", "URGENT: I need help immediately.",
             "Please treat this as high priority."],
    "medium": ["Please get back to me this week.", "I'd appreciate a reply soon.", "Hoping to hear back in a few days."],
    "low": ["No rush, whenever you get a chance.", "Not urgent, just wanted to let you know.",
            "Take your time with this one."],
}
OPENERS = ["Hi,", "Hello support team,", "Dear customer service,", "Hey there,", "Good morning,", "To whom it may concern,",
           "Hi team,", ""]
SIGNOFFS = ["Thanks, {name}", "Best regards,\n{name}", "Cheers, {name}", "-- {name}", "Kind regards, {name}",
            "{name}", "Thank you!\n{name}"]
EMAIL_LINES = ["You can reach me at {email}.", "My email is {email}.", "Contact: {email}", "Reply to {email} please."]


def order_id(rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        return f"ORD-{rng.randrange(10000, 99999)}"
    if style == 1:
        return f"#{rng.randrange(100000, 999999)}"
    if style == 2:
        return f"A{rng.randrange(1000, 9999)}-{rng.choice('BCDXYZ')}{rng.randrange(10, 99)}"
    return f"{rng.randrange(10, 99)}-{rng.randrange(1000000, 9999999)}"


def money(rng: random.Random) -> tuple[float, str]:
    value = round(rng.uniform(5, 900), 2) if rng.random() < 0.7 else float(rng.randrange(10, 1500))
    style = rng.randrange(4)
    text = {0: f"${value:,.2f}", 1: f"{value:.2f} USD", 2: f"USD {value:,.2f}", 3: f"${value:g}"}[style]
    return value, text


def make_ticket(rng: random.Random) -> tuple[str, dict]:
    category = rng.choice(list(CATEGORY_TEMPLATES))
    template = rng.choice(CATEGORY_TEMPLATES[category])
    urgency = rng.choice(["low", "medium", "high"])
    first, last = rng.choice(FIRST), rng.choice(LAST)
    name = f"{first} {last}"
    order = order_id(rng)
    product = rng.choice(PRODUCTS)
    amount, amount_text = money(rng)
    email = f"{first.lower()}{rng.choice(['.', '_', ''])}{last.lower()}{rng.choice(['', str(rng.randrange(1, 99))])}@{rng.choice(DOMAINS)}"
    body = template.format(order=order, product=product, amount=amount_text)
    answer = {
        "customer_name": name if rng.random() < 0.85 else None,
        "email": email if rng.random() < 0.6 else None,
        "order_id": order if "{order}" in template else None,
        "product": product if "{product}" in template else None,
        "amount": amount if "{amount}" in template else None,
        "category": category,
        "urgency": urgency,
    }
    parts = [rng.choice(OPENERS), body, rng.choice(URGENCY_PHRASES[urgency])]
    if answer["email"]:
        parts.append(rng.choice(EMAIL_LINES).format(email=email))
    if answer["customer_name"]:
        parts.append(rng.choice(SIGNOFFS).format(name=name))
    text = "\n".join(p for p in parts if p) if rng.random() < 0.5 else " ".join(p for p in parts if p)
    return text, answer


def example(text: str, answer: dict, index: int, split: str) -> dict:
    return {
        "id": f"{split}-{index:04d}",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": text},
            {"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)},
        ],
    }


SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Support ticket",
    "type": "object",
    "additionalProperties": False,
    "required": ["customer_name", "email", "order_id", "product", "amount", "category", "urgency"],
    "properties": {
        "customer_name": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "order_id": {"type": ["string", "null"]},
        "product": {"type": ["string", "null"]},
        "amount": {"type": ["number", "null"]},
        "category": {"enum": ["billing", "shipping", "technical", "account", "returns"]},
        "urgency": {"enum": ["low", "medium", "high"]},
    },
}


def main(n_train: int = 600, n_holdout: int = 200, seed: int = 20261123) -> None:
    rng = random.Random(seed)
    seen: set[str] = set()
    tickets = []
    while len(tickets) < n_train + n_holdout:
        text, answer = make_ticket(rng)
        key = " ".join(text.lower().split())
        if key in seen:
            continue
        seen.add(key)
        tickets.append((text, answer))
    OUT.mkdir(parents=True, exist_ok=True)
    splits = {"train": tickets[:n_train], "holdout": tickets[n_train:]}
    for split, rows in splits.items():
        with (OUT / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for i, (text, answer) in enumerate(rows):
                handle.write(json.dumps(example(text, answer, i, split), ensure_ascii=False) + "\n")
    (OUT / "schema.json").write_text(json.dumps(SCHEMA, indent=2) + "\n")
    print(f"wrote {n_train} train and {n_holdout} holdout tickets to {OUT}")


if __name__ == "__main__":
    main()

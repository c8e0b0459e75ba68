"""Generate the demo's everyday-knowledge questions (a task this project owns, not a public benchmark).

A general-capability retention probe with headroom: an instruction-tuned model answers these in a
few words, so a fine-tune that forgot how to answer a plain question shows up as a large drop.
(OpenBookQA, the public general-capability set, sits only ~6 points above chance for the 135M
default model: too little room for forgetting to show with 500 items.) Items are written from
fixed tables, by category, and never filtered by any model's answers: selecting the items a base
model gets right would make every other variant look worse by regression to the mean.

Run: python scripts/make_general.py   (writes suites/data/general/facts.jsonl; deterministic)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "the United Kingdom": "London", "Ireland": "Dublin", "Japan": "Tokyo", "China": "Beijing",
    "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw", "Austria": "Vienna",
    "Hungary": "Budapest", "the Czech Republic": "Prague", "Belgium": "Brussels", "the Netherlands": "Amsterdam",
    "Canada": "Ottawa", "Mexico": "Mexico City", "Argentina": "Buenos Aires", "Peru": "Lima", "Chile": "Santiago",
    "Colombia": "Bogota", "Thailand": "Bangkok", "South Korea": "Seoul", "Indonesia": "Jakarta",
    "the Philippines": "Manila", "Kenya": "Nairobi", "Iran": "Tehran", "Iraq": "Baghdad",
    "Saudi Arabia": "Riyadh", "Turkey": "Ankara", "India": "New Delhi", "Australia": "Canberra",
    "New Zealand": "Wellington",
}
CONTINENTS = {
    "France": "Europe", "Germany": "Europe", "Poland": "Europe", "Norway": "Europe", "Italy": "Europe",
    "Kenya": "Africa", "Nigeria": "Africa", "Egypt": "Africa", "Ghana": "Africa", "Ethiopia": "Africa",
    "Japan": "Asia", "China": "Asia", "India": "Asia", "Vietnam": "Asia", "Thailand": "Asia",
    "Brazil": "South America", "Argentina": "South America", "Peru": "South America", "Chile": "South America",
    "Colombia": "South America", "Canada": "North America", "Mexico": "North America",
    "the United States": "North America", "Australia": "Australia", "New Zealand": "Oceania",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "day": "night", "fast": "slow", "happy": "sad",
    "open": "closed", "light": "dark", "early": "late", "old": "young", "wet": "dry", "hard": "soft",
    "full": "empty", "rich": "poor", "strong": "weak", "high": "low", "left": "right", "win": "lose",
    "true": "false", "inside": "outside",
}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


def rows() -> list[dict]:
    out = []

    def add(category: str, question: str, answer: str) -> None:
        out.append({"id": f"{category}-{len([r for r in out if r['category'] == category]):03d}",
                    "category": category, "question": question + " Answer in a few words.", "answer": answer})

    for country, city in CAPITALS.items():
        add("capital", f"What is the capital of {country}?", city)
    for country, continent in CONTINENTS.items():
        add("continent", f"On which continent is {country}?", continent)
    rng = random.Random(7)
    for _ in range(40):
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        add("addition", f"What is {a} + {b}?", str(a + b))
    for word, opposite in OPPOSITES.items():
        add("opposite", f"What is the opposite of '{word}'?", opposite)
    for i, day in enumerate(DAYS):
        add("calendar", f"Which day of the week comes after {day}?", DAYS[(i + 1) % 7])
    for i, month in enumerate(MONTHS):
        add("calendar", f"Which month comes after {month}?", MONTHS[(i + 1) % 12])
    return out


def main() -> None:
    target = ROOT / "suites" / "data" / "general" / "facts.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    data = rows()
    target.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    print(f"{target}: {len(data)} questions")


if __name__ == "__main__":
    main()

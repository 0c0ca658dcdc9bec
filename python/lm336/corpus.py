"""The default corpus: simple English children's stories generated from a grammar, offline.

The pipeline must run on any machine with no network, so the project carries its own text: short
TinyStories-like stories built from a grammar of characters, places, objects, feelings, events,
dialogue and morals. Each story follows one of several plot arcs (a lost thing found, a fear
overcome, sharing, a broken toy mended, a rainy day, learning a skill, helping an animal, a
surprise), and each sentence of an arc is drawn from many variants, so the output has tens of
thousands of distinct sentences while staying consistent within a story (names, pronouns, the
object that was lost is the one that is found). Generation is deterministic for a given seed.

NOTE: this is a stand-in for TinyStories, not a replacement: its vocabulary is a few hundred words
and its grammar is regular, so a tiny model learns it quickly (which is the point of a smoke run).

    from lm336.corpus import write_stories
    write_stories("runs/stories.txt", size_mb=3, seed=0)   # ~3 MB, documents end with <|endoftext|>
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from .common import atomic_write

EOT = "<|endoftext|>"

# 1. The lexicon ---------------------------------------------------------------------------------

GIRLS = [
    "Lily",
    "Mia",
    "Sue",
    "Anna",
    "Emma",
    "Lucy",
    "Sara",
    "Zoe",
    "Amy",
    "Ella",
    "Rosie",
    "Kate",
    "Daisy",
    "Molly",
    "Grace",
    "Ruby",
    "Nina",
    "Jenny",
    "Lola",
    "Maya",
    "Hannah",
    "Ivy",
    "Clara",
]
BOYS = [
    "Tim",
    "Ben",
    "Max",
    "Sam",
    "Tom",
    "Jack",
    "Leo",
    "Finn",
    "Noah",
    "Jake",
    "Billy",
    "Timmy",
    "Oliver",
    "Theo",
    "Danny",
    "Luke",
    "Joe",
    "Peter",
    "Alex",
    "Ollie",
    "Eli",
    "Henry",
    "Toby",
]
ANIMALS = [
    "bunny",
    "puppy",
    "kitten",
    "bear",
    "duck",
    "fox",
    "mouse",
    "bird",
    "frog",
    "squirrel",
    "turtle",
    "lion",
    "owl",
    "pig",
    "cat",
    "dog",
    "elephant",
    "monkey",
    "deer",
    "horse",
]
CHILD_ADJ = ["little", "happy", "curious", "kind", "brave", "shy", "silly", "small", "cheerful", "clever"]
ANIMAL_ADJ = ["little", "fluffy", "tiny", "friendly", "playful", "sleepy", "furry", "gentle", "small", "happy"]

PLACES = [
    ("a small house", "near a big forest"),
    ("a cozy house", "by the sea"),
    ("a little town", "with many trees"),
    ("a big farm", "near a river"),
    ("a tall tree", "in the middle of the woods"),
    ("a quiet village", "on a green hill"),
    ("a yellow house", "next to a park"),
    ("a warm burrow", "under an old oak tree"),
    ("a busy city", "full of lights"),
    ("a small hut", "near a lake"),
]
OUTDOORS = [
    "the park",
    "the garden",
    "the forest",
    "the beach",
    "the meadow",
    "the playground",
    "the hill",
    "the river",
    "the woods",
    "the field",
    "the lake",
    "the yard",
    "the farm",
    "the pond",
]
TOYS = [
    "ball",
    "kite",
    "teddy bear",
    "toy car",
    "doll",
    "red ball",
    "blue kite",
    "toy boat",
    "drum",
    "yellow truck",
    "little train",
    "puzzle",
    "balloon",
    "shiny box",
    "book",
    "hat",
    "crayon",
]
FOUND = [
    "shiny stone",
    "pretty shell",
    "small key",
    "red leaf",
    "golden coin",
    "little box",
    "blue feather",
    "round pebble",
    "old map",
    "tiny bell",
    "big acorn",
    "shiny ring",
    "soft feather",
    "magic stick",
]
HIDE_SPOTS = [
    "under the bed",
    "behind the couch",
    "in the tall grass",
    "under a big rock",
    "near the old tree",
    "in the sand",
    "behind the fence",
    "under the table",
    "in a pile of leaves",
    "next to the pond",
    "in the toy box",
    "under a bush",
]
FOODS = [
    "apples",
    "cookies",
    "sandwiches",
    "cake",
    "berries",
    "bread",
    "carrots",
    "candy",
    "pie",
    "grapes",
    "muffins",
    "a big orange",
    "soup",
    "honey",
]
ACTIVITIES = [
    "play outside",
    "run in the grass",
    "look at the clouds",
    "sing songs",
    "draw pictures",
    "jump in puddles",
    "read books",
    "pick flowers",
    "build with blocks",
    "swim in the lake",
    "climb trees",
    "dance in the sun",
    "chase butterflies",
    "play with her friends",
    "help mom in the kitchen",
    "count the stars",
    "ride a bike",
    "fly a kite",
]
SKILLS = [
    ("ride a bike", "rode the bike", "fell off the bike"),
    ("swim", "swam across the pond", "splashed and sank a little"),
    ("climb the big tree", "climbed to the top", "slipped on a branch"),
    ("jump rope", "jumped ten times", "tripped on the rope"),
    ("tie a shoe", "tied a perfect bow", "made a big knot"),
    ("whistle", "whistled a happy song", "only blew air"),
    ("paint a picture", "painted a beautiful sun", "spilled the paint"),
    ("bake a cake", "baked a yummy cake", "burned the first cake"),
]
FEARS = [
    ("the dark", "the dark room"),
    ("the big dog", "the big dog next door"),
    ("the loud storm", "the thunder"),
    ("the deep water", "the lake"),
    ("the tall slide", "the slide"),
    ("the old barn", "the barn"),
    ("the first day of school", "school"),
]
HAPPY = ["happy", "glad", "excited", "proud", "joyful", "cheerful", "very happy", "so happy"]  # [:6] after "so"
SAD = ["sad", "upset", "worried", "unhappy", "lonely", "very sad", "a little sad"]
SCARED = ["scared", "afraid", "nervous", "frightened", "very scared"]
TIMES = ["One day", "One morning", "One sunny day", "One afternoon", "One evening", "One bright morning", "One summer day", "One cold day"]
ADVERBS = ["slowly", "quickly", "carefully", "happily", "quietly", "softly", "gently", "bravely"]
SOUNDS = ["a loud noise", "a soft cry", "a funny sound", "a little squeak", "a big splash", "a sad sound"]
HELPERS = ["mom", "dad", "grandma", "grandpa", "the teacher", "a wise old owl", "a kind neighbor"]
MORALS = {
    "lost": [
        "it is good to keep looking and never give up",
        "friends help each other find things",
        "you should take care of the things you love",
        "asking for help is a smart thing to do",
    ],
    "fear": [
        "being brave means doing things even when you are scared",
        "things are not so scary when a friend is with you",
        "it is okay to be afraid and try anyway",
        "the dark is not so bad after all",
    ],
    "share": [
        "sharing makes everyone happy",
        "it is more fun to play together",
        "a good friend always shares",
        "being kind to others makes you feel good too",
    ],
    "broken": [
        "it is good to say sorry",
        "broken things can be fixed with love and patience",
        "telling the truth is always best",
        "friends forgive each other",
    ],
    "rain": [
        "a bad day can turn into a good day",
        "you can have fun even when it rains",
        "it is good to make the best of things",
        "family time is the best time",
    ],
    "skill": [
        "practice makes things better",
        "if you keep trying, you can do hard things",
        "it is okay to make mistakes when you learn",
        "never give up on what you want to do",
    ],
    "animal": [
        "being kind to animals is important",
        "helping others is the right thing to do",
        "even small friends need help sometimes",
        "a kind heart makes many friends",
    ],
    "surprise": [
        "the best gifts come from the heart",
        "making others happy is a special feeling",
        "giving can be even more fun than getting",
        "love is the best surprise of all",
    ],
}


# 2. Characters ----------------------------------------------------------------------------------


class Character:
    """A story's person or animal: name, how the narrator introduces it, and its pronouns."""

    def __init__(self, rng: random.Random, avoid: str = "") -> None:
        kind = rng.random()
        female = rng.random() < 0.5
        if kind < 0.65:  # a child
            names = GIRLS if female else BOYS
            self.noun = "girl" if female else "boy"
            self.adj = rng.choice(CHILD_ADJ)
        else:  # an animal with a name
            names = GIRLS + BOYS
            self.noun = rng.choice(ANIMALS)
            self.adj = rng.choice(ANIMAL_ADJ)
            female = rng.random() < 0.5
        self.name = rng.choice([n for n in names if n != avoid])
        self.he, self.him, self.his = ("she", "her", "her") if female else ("he", "him", "his")
        self.a = "an" if self.adj[0] in "aeiou" else "a"

    def intro(self) -> str:  # "a little girl named Lily"
        return f"{self.a} {self.adj} {self.noun} named {self.name}"

    def called(self) -> str:  # "Ben the bunny", or just "Lily" for a child
        return self.name if self.noun in ("girl", "boy") else f"{self.name} the {self.noun}"


def _cap(s: str) -> str:
    return s[0].upper() + s[1:] if s else s


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


# 3. Story parts ---------------------------------------------------------------------------------


def _opening(rng: random.Random, h: Character) -> list[str]:
    home, where = rng.choice(PLACES)
    activity = rng.choice(ACTIVITIES).replace("her friends", f"{h.his} friends")
    first = rng.choice(
        [
            f"Once upon a time, there was {h.intro()}.",
            f"Once upon a time, in {home} {where}, there lived {h.intro()}.",
            f"There was once {h.intro()}.",
            f"{h.name} was {h.a} {h.adj} {h.noun}.",
            f"Once there was {h.intro()} who lived in {home} {where}.",
        ]
    )
    out = [first]
    if "lived" not in first and rng.random() < 0.7:
        out.append(f"{_cap(h.he)} lived in {home} {where}.")
    out.append(
        rng.choice(
            [
                f"{_cap(h.he)} loved to {activity}.",
                f"Every day, {h.name} liked to {activity}.",
                f"{h.name} liked to {activity} more than anything.",
                f"{_cap(h.his)} favorite thing was to {activity}.",
            ]
        )
    )
    return out


def _said(rng: random.Random, who: str, line: str, mood: str = "") -> str:
    verb = rng.choice(["said", "said", "asked" if line.endswith("?") else "said", "shouted" if line.endswith("!") else "said", "whispered"])
    # Before the speech tag a final full stop becomes a comma: "I can help," said Tom.
    quoted = line[:-1] + "," if line.endswith(".") else line
    if mood and rng.random() < 0.4:
        return f'"{quoted}" {who} {verb} {mood}.'
    if rng.random() < 0.5:
        return f'"{quoted}" {verb} {who}.'
    return f'{who} {verb}, "{line}"'


def _friend_arrives(rng: random.Random, h: Character, f: Character) -> list[str]:
    return [
        rng.choice(
            [
                f"Then {h.name} saw {h.his} friend {f.name}, {_a(f.adj + ' ' + f.noun)}.",
                f"Just then, {h.his} friend {f.called()} came by.",
                f"{h.name} met {f.intro()}.",
                f"Soon, {f.called()} walked over to {h.him}.",
            ]
        )
    ]


def _arc_lost(rng, h, f):
    toy = rng.choice(TOYS)
    spot = rng.choice(HIDE_SPOTS)
    place = rng.choice(OUTDOORS)
    s = [
        rng.choice(
            [
                f"{h.name} had {_a(toy)} that {h.he} loved very much.",
                f"{h.name}'s favorite toy was {_a(toy)}.",
                f"{_cap(h.he)} took {h.his} {toy} everywhere.",
            ]
        )
    ]
    s.append(f"{rng.choice(TIMES)}, {h.name} went to {place} with {h.his} {toy}.")
    s.append(
        rng.choice(
            [
                f"When it was time to go home, {h.he} could not find {h.his} {toy}.",
                f"After a while, {h.name} looked around, but the {toy} was gone!",
                f"Oh no! The {toy} was lost.",
            ]
        )
    )
    s.append(f"{h.name} felt {rng.choice(SAD)}.")
    s.append(_said(rng, h.name, rng.choice([f"Where is my {toy}?", f"I lost my {toy}!", "What can I do?"])))
    s += _friend_arrives(rng, h, f)
    s.append(
        _said(
            rng,
            f.name,
            rng.choice(
                [
                    "Do not worry. I will help you look.",
                    "Let's look for it together!",
                    "I can help you find it.",
                ]
            ),
        )
    )
    s.append(
        rng.choice(
            [
                f"They looked {rng.choice(HIDE_SPOTS)} and {rng.choice(HIDE_SPOTS)}.",
                "They looked high and low.",
                f"They searched all over {place}.",
            ]
        )
    )
    s.append(
        rng.choice(
            [
                f"At last, {f.name} found the {toy} {spot}!",
                f"Then {h.name} saw something {spot}. It was the {toy}!",
                f"Finally, they found the {toy} {spot}.",
            ]
        )
    )
    s.append(f'{h.name} was {rng.choice(HAPPY)}. {_cap(h.he)} hugged {f.name} and said, "Thank you!"')
    return s, "lost"


def _arc_fear(rng, h, f):
    fear, short = rng.choice(FEARS)
    helper = rng.choice(HELPERS)
    s = [f"But {h.name} was {rng.choice(SCARED)} of {fear}."]
    s.append(
        rng.choice(
            [
                f"{rng.choice(TIMES)}, {h.name} had to face {short}.",
                f"{rng.choice(TIMES)}, {h.name} saw {short} and wanted to run away.",
            ]
        )
    )
    s.append(
        _said(rng, h.name, rng.choice(["I am too scared!", "I don't want to go!", "What if something bad happens?"]), "in a small voice")
    )
    if rng.random() < 0.5:
        s += _friend_arrives(rng, h, f)
        who = f.name
    else:
        s.append(f"{_cap(helper)} came and sat next to {h.him}.")
        who = _cap(helper)
    s.append(
        _said(
            rng,
            who,
            rng.choice(
                [
                    "It is okay to be scared. I will be right here with you.",
                    "Let's do it together. Hold my hand.",
                    "You are braver than you think.",
                    "Take a deep breath. You can do it.",
                ]
            ),
        )
    )
    s.append(f"{h.name} took a deep breath and {rng.choice(ADVERBS)} stepped forward.")
    s.append(
        rng.choice(
            [
                "It was not so scary after all!",
                f"Soon, {h.he} was not {rng.choice(SCARED)} anymore.",
                f"To {h.his} surprise, {short} was fun.",
            ]
        )
    )
    s.append(f"{h.name} smiled. {_cap(h.he)} felt {rng.choice(HAPPY)} and brave.")
    return s, "fear"


def _arc_share(rng, h, f):
    if rng.random() < 0.5:
        food = rng.choice(FOODS)
        have = food if food.startswith("a ") else f"some {food}"
        thing, verb = ("it" if food.startswith("a ") else "them"), "ate"
        looked = f"the {food[2:]}" if food.startswith("a ") else f"the {food}"
    else:
        toy = rng.choice(TOYS)
        have, thing, verb, looked = _a(toy), "it", "played", f"the {toy}"
    s = [f"{rng.choice(TIMES)}, {h.name} had {have}."]
    s += _friend_arrives(rng, h, f)
    s.append(f"{f.name} looked at {looked} and felt {rng.choice(SAD)}. {_cap(f.he)} did not have any.")
    s.append(_said(rng, f.name, rng.choice(["Can I have some too?", "Can I play too?", "That looks so nice."])))
    s.append(
        rng.choice(
            [
                f"At first, {h.name} did not want to share.",
                f"{h.name} thought about it for a moment.",
                f"{h.name} wanted to keep {thing} all for {h.him}self.",
            ]
        )
    )
    s.append(
        rng.choice(
            [
                f"Then {h.he} saw how {rng.choice(SAD)} {f.name} was.",
                f"Then {h.he} remembered what {h.his} mom always said.",
                f"But then {h.he} had a good idea.",
            ]
        )
    )
    s.append(_said(rng, h.name, rng.choice(["Here, we can share!", "Let's share it together.", "You can have half."]), "with a smile"))
    s.append(
        rng.choice(
            [
                f"{f.name} smiled a big smile. They {verb} together all afternoon.",
                "They sat down together and had so much fun.",
                f"{f.name} was {rng.choice(HAPPY)}, and so was {h.name}.",
            ]
        )
    )
    return s, "share"


def _arc_broken(rng, h, f):
    toy = rng.choice(TOYS)
    s = [f"{rng.choice(TIMES)}, {f.called()} came to play with {h.name}."]
    s.append(f"{f.name} brought {f.his} {rng.choice(['new', 'favorite', 'special', 'shiny'])} {toy}.")
    s.append(
        rng.choice(
            [
                f"{h.name} wanted to hold it. {_cap(h.he)} pulled too hard, and the {toy} broke!",
                f"They played and played, but {h.name} dropped the {toy} and it broke.",
                f"{h.name} threw the {toy} too high, and it fell and broke.",
            ]
        )
    )
    s.append(f"{f.name} started to cry. {h.name} felt {rng.choice(SAD)} and {rng.choice(SCARED)}.")
    s.append(
        rng.choice(
            [
                f"{h.name} wanted to hide, but {h.he} knew that was not right.",
                f"{h.name} did not know what to do.",
            ]
        )
    )
    s.append(
        _said(
            rng,
            h.name,
            rng.choice(
                [
                    "I am sorry. I did not mean to break it.",
                    "I am so sorry. Let me help fix it.",
                    "It was my fault. I am sorry.",
                ]
            ),
        )
    )
    helper = rng.choice(HELPERS[:4])
    s.append(
        rng.choice(
            [
                f"They asked {helper} for help, and {helper} fixed the {toy} with some glue.",
                f"Together, they fixed the {toy} with tape and string.",
                f"{_cap(helper)} helped them fix the {toy}. It looked almost like new.",
            ]
        )
    )
    s.append(_said(rng, f.name, rng.choice(["Thank you for saying sorry.", "It is okay. We are still friends.", "Now it is even better!"])))
    s.append("They hugged and played together again.")
    return s, "broken"


def _arc_rain(rng, h, f):
    place = rng.choice(OUTDOORS)
    act = rng.choice(["have a picnic", "play ball", "go to " + place, "fly a kite", "go on a walk"])
    s = [f"{rng.choice(TIMES)}, {h.name} wanted to {act}."]
    s.append(
        rng.choice(
            [
                "But then dark clouds came, and it started to rain.",
                f"But when {h.he} looked out the window, it was raining.",
                "Suddenly, big drops of rain began to fall.",
            ]
        )
    )
    s.append(f"{h.name} felt {rng.choice(SAD)}.")
    s.append(_said(rng, h.name, rng.choice(["Now we can't go out!", "This is the worst day ever.", "Why does it have to rain?"])))
    helper = rng.choice(HELPERS[:4])
    s.append(f"{_cap(helper)} had an idea.")
    idea = rng.choice(
        [
            ("Let's build a fort inside!", "built a big fort with blankets and pillows"),
            ("Let's play a game in the living room!", "played hide and seek in the living room"),
            ("Let's bake cookies!", "baked warm cookies that smelled so good"),
            ("Let's put on boots and jump in puddles!", "jumped in every puddle they could find"),
            ("Let's draw a picture of a sunny day!", "drew the sun, the sky and a big rainbow"),
        ]
    )
    s.append(_said(rng, _cap(helper), idea[0]))
    s.append(f"So they {idea[1]}.")
    s.append(
        rng.choice(
            [
                "After a while, the rain stopped and a rainbow came out.",
                f"{h.name} laughed and laughed.",
                "It was the best day, even with the rain.",
            ]
        )
    )
    return s, "rain"


def _arc_skill(rng, h, f):
    skill, success, failure = rng.choice(SKILLS)
    s = [f"{h.name} wanted to learn how to {skill}."]
    s.append(f"{rng.choice(TIMES)}, {h.he} tried, but {h.he} {failure}.")
    s.append(f'{h.name} felt {rng.choice(SAD)}. "I can\'t do it," {h.he} said.')
    s += _friend_arrives(rng, h, f)
    s.append(
        _said(
            rng,
            f.name,
            rng.choice(
                [
                    "Don't give up! Try again.",
                    "Everyone makes mistakes when they learn.",
                    "I will show you how. Watch me.",
                    "You just need to practice.",
                ]
            ),
        )
    )
    s.append(
        rng.choice(
            [
                f"So {h.name} tried again, and again, and again.",
                f"{h.name} practiced every day.",
                f"{h.name} watched {f.name} and tried once more, very {rng.choice(ADVERBS)}.",
            ]
        )
    )
    s.append(f"At last, {h.name} {success}!")
    s.append(_said(rng, h.name, rng.choice(["I did it!", "Look at me!", "Thank you for helping me!"]), "with a big smile"))
    s.append(f"{h.name} was so {rng.choice(['proud', 'happy', 'excited'])}.")
    return s, "skill"


def _arc_animal(rng, h, f):
    animal = rng.choice(ANIMALS)
    place = rng.choice(OUTDOORS)
    trouble = rng.choice(
        [
            ("was stuck in a tree", "helped it climb down"),
            ("had a hurt leg", "wrapped its leg in a soft cloth"),
            ("was lost and could not find its mom", "helped it find its mom"),
            ("was very hungry", "gave it some food"),
            ("was cold and wet", "dried it with a warm towel"),
            ("was stuck in a hole", "pulled it out gently"),
        ]
    )
    s = [f"{rng.choice(TIMES)}, {h.name} went to {place}."]
    s.append(f"{_cap(h.he)} heard {rng.choice(SOUNDS)}.")
    s.append(f"{_cap(h.he)} looked around and saw {_a(rng.choice(ANIMAL_ADJ) + ' ' + animal)}. The {animal} {trouble[0]}.")
    s.append(_said(rng, h.name, rng.choice(["Poor thing! I will help you.", "Don't be scared. I am your friend.", "Oh no! Are you okay?"])))
    s.append(f"{h.name} {rng.choice(ADVERBS)} {trouble[1]}.")
    s.append(
        rng.choice(
            [
                f"The {animal} was {rng.choice(HAPPY)}. It licked {h.name}'s hand.",
                f"The {animal} looked at {h.name} and made a happy sound.",
                f"The {animal} jumped up and down with joy.",
            ]
        )
    )
    s.append(
        rng.choice(
            [
                f"From then on, the {animal} came to visit {h.name} every day.",
                f"{h.name} and the {animal} became best friends.",
                f"{h.name} felt warm inside.",
            ]
        )
    )
    return s, "animal"


def _arc_surprise(rng, h, f):
    gift = rng.choice(["a cake", "a card", "a picture", "a necklace of flowers", "a little song", "a paper crown"])
    event = rng.choice(["birthday", "first day at the new house", "last day before the trip", "special day"])
    s = [f"{rng.choice(TIMES)}, {h.name} found out it was {f.name}'s {event}."]
    s.append(f"{h.name} wanted to make {_a('big surprise')} for {f.him}.")
    s.append(f"{_cap(h.he)} made {gift} all by {h.him}self.")
    s.append(
        rng.choice(
            [
                f"It was hard work, and {h.he} almost gave up.",
                f"{_cap(h.he)} worked on it all morning.",
                f"{_cap(h.he)} hid it {rng.choice(HIDE_SPOTS)} so {f.name} would not see.",
            ]
        )
    )
    s.append(f'When {f.name} came, {h.name} shouted, "Surprise!"')
    s.append(f"{f.name} was so {rng.choice(HAPPY[:6])}. {_cap(f.he)} gave {h.name} a big hug.")
    s.append(_said(rng, f.name, rng.choice(["This is the best gift ever!", "Thank you, you are my best friend!", "I love it!"])))
    return s, "surprise"


ARCS = [_arc_lost, _arc_fear, _arc_share, _arc_broken, _arc_rain, _arc_skill, _arc_animal, _arc_surprise]


def _ending(rng: random.Random, h: Character, moral_kind: str) -> list[str]:
    moral = rng.choice(MORALS[moral_kind])
    out = [
        rng.choice(
            [
                f"From that day on, {h.name} knew that {moral}.",
                f"{h.name} learned that {moral}.",
                f"That day, {h.name} learned that {moral}.",
                f"And {h.name} always remembered that {moral}.",
            ]
        )
    ]
    if rng.random() < 0.35:
        out.append(rng.choice(["The end.", "And they all lived happily ever after.", "What a day it was!"]))
    return out


# 4. Whole stories and files ---------------------------------------------------------------------


def generate_story(rng: random.Random) -> str:
    """One story: an opening, one plot arc (sometimes two), and a moral. A paragraph break or two
    keeps the layout TinyStories-like.

    Example: `generate_story(random.Random(0))` -> "Once upon a time, there was a curious boy named Leo. ..."
    """
    hero = Character(rng)
    friend = Character(rng, avoid=hero.name)
    sentences = _opening(rng, hero)
    arc = rng.choice(ARCS)
    body, moral = arc(rng, hero, friend)
    paragraphs = [" ".join(sentences), " ".join(body)]
    if rng.random() < 0.2:  # a second, shorter episode with the same hero
        second = rng.choice([a for a in ARCS if a is not arc])
        body2, moral = second(rng, hero, Character(rng, avoid=hero.name))
        paragraphs.append(" ".join(body2))
    paragraphs.append(" ".join(_ending(rng, hero, moral)))
    # Sometimes merge the opening into the story, as real stories vary their layout.
    if rng.random() < 0.5:
        paragraphs = [paragraphs[0] + " " + paragraphs[1]] + paragraphs[2:]
    return "\n\n".join(paragraphs)


def iter_stories(seed: int = 0) -> Iterator[str]:
    """An endless, deterministic stream of stories for the given seed."""
    rng = random.Random(seed)
    while True:
        yield generate_story(rng)


def write_stories(path: str | Path, size_mb: float = 3.0, seed: int = 0) -> dict:
    """Write stories until about `size_mb` megabytes (10^6 bytes), each followed by a line
    `<|endoftext|>`. Written atomically.

    Returns:
        {"path", "bytes", "documents"}.
    """
    if not size_mb > 0:
        raise ValueError(f"size_mb must be positive, got {size_mb}")
    target = int(size_mb * 1_000_000)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts: list[str] = []
    total = docs = 0
    for story in iter_stories(seed):
        doc = f"{story}\n{EOT}\n"
        parts.append(doc)
        total += len(doc.encode("utf-8"))
        docs += 1
        if total >= target:
            break
    with atomic_write(path, "w") as f:
        f.write("".join(parts))
    return {"path": str(path), "bytes": total, "documents": docs}

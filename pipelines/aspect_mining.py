"""Mine aspect terms from review sentences: frequent nouns and noun bigrams near opinion words.

The slice's stand-in for a learned aspect tagger (issue 5 replaces it). Without a part-of-speech
tagger, a "noun" is a word that is not a stop word, an opinion word or a generic review word; a
candidate that appears near an opinion word in a good share of its occurrences ("the battery is
great", "terrible sound quality") is an aspect term. A bigram joins the aspect of its first word
when that word is an aspect too ("battery life" -> battery), so the two never count twice.

What people write about besides the product is no aspect: people and relations ("my daughter
loved it"), occasions ("for Christmas"), generic nouns and verbs ("help", "option", "found"),
contractions ("they'd fit"), and the product type itself ("gift card" in a gift-card category,
found from the item titles or, without titles, from how many reviews name it; in a category of
many product types, the nouns reviewers point at with "this"/"these": "I love this soap!" names
the product, "the smell" an aspect of it). Synonyms are merged under one name (cost, value ->
price; colour -> color).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

POSITIVE_WORDS = frozenset("""
good great excellent amazing awesome love loved loves lovely perfect perfectly fantastic wonderful
nice best better superb outstanding impressive comfortable comfy solid sturdy reliable crisp clear
clean rich smooth fast quick easy happy pleased satisfied recommend recommended beautiful pretty
gorgeous stylish sleek elegant decent fine favorite favourite brilliant incredible terrific
fabulous excellent exceptional remarkable flawless durable affordable cheap inexpensive worth
glad enjoy enjoyed enjoying like liked likes soft gentle fresh pleasant lightweight light strong
powerful responsive accurate convenient handy useful effective works worked tasty delicious
friendly helpful quiet long-lasting sharp vivid bright loud punchy deep warm lasts forever
thrilled heavenly delighted
""".split())

# Not "issue": a magazine's issue, "social issues" (a complaint's "issue" usually comes with one of
# these words anyway: "had issues, returned it").
NEGATIVE_WORDS = frozenset("""
bad poor terrible awful horrible worst worse hate hated hates disappointing disappointed
disappointment useless broken broke breaks cheap flimsy weak uncomfortable painful hurts hurt
annoying annoyed slow laggy buggy noisy loud muffled tinny harsh dull distorted distortion
expensive overpriced pricey fragile faulty defective unreliable mediocre meh awkward bulky heavy
ugly tight loose sticky greasy itchy dry burning irritated irritation smelly stinks stinky
fake flimsy garbage junk waste wasted refund returned return problem problems dies
died dead drains drained fails failed failing failure lousy subpar inferior rough scratchy short
worried worry worries stolen
""".split())

OPINION_WORDS = POSITIVE_WORDS | NEGATIVE_WORDS

STOP_WORDS = frozenset("""
a an the and or but if then else so than that this these those there here it its it's itself
i me my mine myself we us our ours you your yours he him his she her hers they them their theirs
what which who whom whose when where why how all any both each few more most other some such no
nor not only own same too very can will just don't should now is are was were be been being have
has had having do does did doing am would could might must shall may also really even still much
many lot lots bit quite rather pretty well just about above after again against before below
between during from into of off on once out over through to under until up with at by for as in
get gets got getting make makes made use used uses using buy bought buying try tried trying come
comes came go goes went going take took put keep kept give gave say said see seen look looks
looked feel feels felt seem seems seemed know think thought want wanted need needs needed way
thing things something anything everything nothing one ones someone anyone everyone product
products item items purchase purchased order ordered review reviews star stars amazon time times
day days week weeks month months year years back first second last another lot little big new
old same sure yes ok okay etc also however although though because since while yet still ever
never always sometimes often usually again already maybe perhaps actually definitely absolutely
totally completely highly extremely super so-so kind sort type bit couple half every able
i'm i've i'd i'll you're you've we're they're it's that's there's isn't aren't doesn't don't
didn't can't couldn't won't wouldn't wasn't weren't haven't hasn't let's
""".split())

# Nouns reviews use that are not attributes of the product: people, occasions and shopping events
# (Amazon's "Lightning Deals", Prime Day), generic nouns,
# verbs and adjectives that pass the noun test, and place holders. `tests/test_aspect_mining.py`
# holds the lexicon to this list on real reviews.
NON_ASPECTS = frozenset("""
people person persons man men woman women guy guys girl girls boy boys lady ladies kid kids child
children baby babies toddler teen teens teenager teenagers adult adults family families friend
friends wife husband mom mum mother dad father parents parent son sons daughter daughters sister
sisters brother brothers niece nieces nephew nephews grandchildren grandchild granddaughter
granddaughters grandson grandsons grandma grandpa grandmother grandfather aunt uncle cousin
cousins boyfriend girlfriend fiance fiancee partner coworker coworkers colleague colleagues boss
teacher teachers student students customer customers recipient recipients receiver receivers
neighbor neighbors neighbour everyone everybody somebody nobody myself yourself himself herself
christmas xmas birthday birthdays holiday holidays anniversary wedding graduation occasion
occasions valentine valentine's mother's father's easter thanksgiving stocking stockings party
lightning prime friday promotion promo coupon coupons sale sales
help work works worked working found find finds option options part parts description choice
choices reason reasons place places purpose idea ideas experience thing stuff fact case end
problem problems issue issues question questions answer situation point lot deal job hand hands
home house life world way ways matter mind word words name names number numbers amount kind
opinion opinions review reviewer reviewers rating ratings stars seller sellers company brand
store stores shop shops website site online mail email money dollars dollar cents bucks
thank thanks love hope wish glad sure lol wow red blue green black white pink yellow purple
present presents redeem redeeming redeemed late early today tomorrow yesterday morning night
gift gifts within without minutes minute hours hour two three four five ten latest current
special weekly monthly daily gives offers real around overall small large date left side top
entire whole
""".split())

# Surface words merged under one aspect name.
SYNONYMS = {"cost": "price", "costs": "price", "value": "price", "pricing": "price",
            "prices": "price", "colour": "color", "colours": "color", "colors": "color",
            "sizing": "size", "sizes": "size", "smells": "smell",
            "scent": "smell", "scents": "smell", "fragrance": "smell", "smelling": "smell",
            "aroma": "smell", "aromas": "smell",
            "shipping": "delivery", "mag": "magazine", "photos": "pictures",
            "penny": "price",  # "worth every penny"
            "photographs": "pictures"}

# A noun written after "this"/"these" (within two words) in at least this share of at least this
# many occurrences is a product reviewers point at ("this shampoo", "this set", "this Dove bar"),
# not an aspect of one: in All_Beauty, whose items have no titles to name the product type, 17-34%
# of the occurrences of set, shampoo, gel, cream, soap, bath, body, bar and lotion, against 1-8%
# for smell, price, skin, hair, color and size; 32% of "publication" among magazines.
DEICTIC_SHARE, MIN_DEICTIC_EVIDENCE = 0.15, 20
_DEICTIC = frozenset(("this", "these"))
# Adjectives and verbs pass for nouns without a part-of-speech tagger; the word before them
# tells: a word after a copula or an intensifier in this share of its occurrences is an adjective
# ("is gentle", "very mild", "feels natural"), after a subject pronoun a verb ("it lathers").
# Nouns seldom are either (All_Beauty: gentle 63%, mild 42%, natural 25%, fresh 16% after a
# copula or intensifier, lathers 33% after a pronoun; every aspect kept under 7% and 11%).
ADJECTIVE_SHARE, VERB_SHARE, MIN_WORD_CLASS_EVIDENCE = 0.12, 0.2, 20
_ADJECTIVE_CUES = frozenset("""
very so too really extremely pretty quite super fairly incredibly is are was were be been being
feels feel felt seems seem seemed looks look looked smells smelled tastes tasted
""".split())
_SUBJECTS = frozenset("i it they we you he she".split())

# Words that introduce a noun phrase: nouns follow them, verbs rarely do.
DETERMINERS = frozenset("""
the a an this that these those my your his her its our their some any no every each
""".split())

_WORD = re.compile(r"[a-z][a-z'\-]+")
_CASED_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9'\-]*")  # words and numbers, for reading opinions
_HTML_TAG = re.compile(r"<[^>]*(?:>|$)")  # a tag, or an unclosed one cut off at the end
# The same boundaries as `albert_tf.export.CLAUSE_BOUNDARY`, Chinese punctuation and contrastive
# conjunctions included (a test keeps the two equal).
_CLAUSE = re.compile(r"\b(?:but|however|although|though|whereas|while|yet|except)\b|[;:,!?.]"
                     r"|[，。！？；：、]|但是|不过|可是")


NEGATIONS = frozenset("not no never nothing hardly barely neither nor without".split())
# "I would have liked it in a tin", "I wish it were bigger": a wish is no praise.
# An inverted condition is one too: "were I picking the perfect bath mitt".
# An expectation is none either: "thinking she'd enjoy it", "I thought it would be great".
_COUNTERFACTUAL = re.compile(r"\b(?:would|could|should)(?: have|'ve)\b|\bwish(?:ed|es)?\b|\bhoped\b"
                             r"|\b(?:were|had) (?:i|we)\b"
                             r"|\b(?:thinking|thought|hoping|expecting|expected)\b")


@functools.lru_cache(maxsize=4096)
def _term_patterns(terms: tuple[str, ...]) -> list[re.Pattern]:
    """Whole-word patterns of an aspect's terms, compiled once (features calls per mention)."""
    return [re.compile(r"\b" + re.escape(t.lower()) + r"\b") for t in terms if t]


def _naming_clauses(sentence: str, terms: Iterable[str]) -> list[str]:
    """The lower-cased clauses of `sentence` that name one of `terms` (the whole sentence when
    none does)."""
    patterns = _term_patterns(tuple(terms))
    clauses = [c for c in _CLAUSE.split(sentence.lower()) if c.strip()]
    return [c for c in clauses if any(p.search(c) for p in patterns)] or [sentence.lower()]


# Words that make a whole sentence a complaint, whichever clause names the aspect ("The only
# drawback to this soap is the scent, which is the usual strong smell for ... body products").
COMPLAINT_FRAMES = frozenset("drawback drawbacks downside downsides complaint complaints".split())


# "like" praises after its subject ("I really like the tin"), not as a preposition ("things
# like the shower curtain", "smells like vinegar").
_LIKE_SUBJECTS = frozenset("i we you they he she really also do does did definitely truly "
                           "still always both all i'd we'd".split())
# A condition is no statement about this item: "If my dentist offered this at a good price ...".
_CONDITION = re.compile(r"^\s*(?:and\s+|so\s+)?(?:if|unless)\b")
# A question is none either: "Do you love collecting quality photos of nature?" (a sentence
# part that ends in "?").
_SENTENCE_PART = re.compile(r"[^.!?]*(?:[.!?]+|$)")


def _asked(sentence: str, terms: tuple[str, ...]) -> bool:
    """Whether every part of `sentence` that names `terms` is a question."""
    patterns = _term_patterns(terms)
    naming = [part for part in _SENTENCE_PART.findall(sentence.lower())
              if any(p.search(part) for p in patterns)]
    return bool(naming) and all(part.rstrip().endswith("?") for part in naming)


# "loves to treat his housemates to pizza", "loves having them to grab a quick meal", "love that
# I was able to treat her to a meal": a liking of an activity, not of the aspect named after it.
_LOVE = frozenset("love loves loved like likes liked enjoy enjoys enjoyed".split())
_ACTIVITY = frozenset("to that being having getting going".split())


# "one bar tends to go fast", "it runs out quick": a consumable used up, no praise.
_SPEED = frozenset("fast quick".split())
_USED_UP = frozenset("go goes went going gone run runs ran out up".split())


def _praising_words(words: list[str], terms: set[str]) -> list[str]:
    """The positive words of a clause that praise the aspect named by `terms` (see
    `NOT_PRAISE_OF`, `_LIKE_SUBJECTS` and `_ACTIVITY`; "light on content" lacks it, and a bar
    that goes fast is used up)."""
    return [w for i, w in enumerate(words)
            if w in POSITIVE_WORDS and not (NOT_PRAISE_OF.get(w, frozenset()) & terms)
            and (w != "like" or (i > 0 and words[i - 1] in _LIKE_SUBJECTS))
            and not (w in _LOVE and i + 1 < len(words) and words[i + 1] in _ACTIVITY)
            and not (w == "light" and i + 1 < len(words) and words[i + 1] == "on")
            and not (w in _SPEED and i > 0 and words[i - 1] in _USED_UP)]


# Positive words that are no praise of some aspects: "a strong smell" is not a compliment.
NOT_PRAISE_OF = {"strong": frozenset("smell smells scent scents fragrance odor odour perfume "
                                     "taste flavor flavour chemical".split()),
                 # "grab a quick meal": a kind of meal, not a compliment
                 "quick": frozenset("meal meals lunch dinner breakfast bite snack".split())}


# Products an aspect's word may name the kind of: "this body lotion", "a hair spray".
PRODUCT_NOUNS = ("lotion|lotions|wash|washes|gel|gels|cream|creams|soap|soaps|spray|sprays|oil|oils|"
                 "mask|masks|scrub|scrubs|butter|bomb|bombs|salt|salts|mist|serum|balm|cleanser|"
                 "brush|brushes|dryer|dryers|kit|kits|bar|bars|conditioner|conditioners|"
                 "shampoo|shampoos|cap|caps|head|heads")

# Places a product is used in: "works great in the shower" is no praise of the shower.
PLACES = "shower|showers|bath|baths|bathtub|tub|sink|kitchen|car|mail|mailbox|office|gym|pool|sun"

# Openers of a "for" phrase that names who or what an item suits, not what is praised.
_AUDIENCE = ("people|person|anyone|anybody|everyone|everybody|someone|somebody|those|any|every|"
             "all|last|kids|children|men|women|beginners")


@functools.lru_cache(maxsize=4096)
def _not_the_subject(terms: tuple[str, ...]) -> re.Pattern | None:
    """Uses of a term that do not name the thing praised: set aside ("many aspects besides just
    food", "other than the price"), a verb ("features a nice cross section": a noun is not
    followed by a determiner), the standard of a comparison ("as good as cash") or an idiom
    ("you're all set")."""
    names = "|".join(re.escape(t.lower()) for t in terms if t)
    if not names:
        return None
    determiners = "|".join(sorted(DETERMINERS - {"no"}))
    return re.compile(
        rf"\b(?:besides|beyond|apart from|aside from|other than|except for)\b(?:\W+\w+){{0,2}}"
        rf"\W+(?:{names})\b|\b(?:{names})\s+(?:{determiners}|all kinds|all sorts|many|several"
        rf"|lots of|plenty of)\b"
        # the standard of a comparison: "better than using cash", "as good as cash"
        rf"|\b(?:than|as \w+ as)\b(?:\W+\w+){{0,1}}\W+(?:{names})\b"
        # an idiom, not the product: "you're all set", "takes better care of his teeth"
        rf"|\ball (?:{names})\b(?!\s+of)"
        rf"|\b(?:take|takes|took|taking|taken)\s+(?:\w+\s+)?care\s+of\s+(?:\w+\s+){{0,2}}(?:{names})\b"
        # an audience or a purpose: "for people who enjoy their food", "for any cook", "useful
        # for last minute meal", "a nice base for applying color" ("great for the price" stays)
        rf"|\bfor (?:{_AUDIENCE}|(?!(?:any|every|some|no)thing\b)\w+ing)\b(?:\W+[\w']+){{0,4}}?\W+(?:{names})\b"
        rf"|\b(?:{names})\s+(?:lovers?|fans?|enthusiasts?|buffs?|goers?)\b"
        # a kind of card or product, not the aspect: "restaurant gift cards", "body lotion"
        rf"|\b(?:{names})\s+(?:gift\s+)?(?:cards?|certificates?)\b"
        rf"|\b(?:{names})\s+(?:{PRODUCT_NOUNS})\b"
        # a verb or part of a compound: "it seems to set-up the beard", "I shower twice a day"
        rf"|\bto (?:{names})\b|\b(?:{names})-\w|\b(?:i|we|you|they|he|she)\s+(?:{names})\b"
        # a setting: "the lingering scent after my shower", "washes away well in the shower",
        # "easy to use on my body"
        rf"|\b(?:after|before|during)\s+(?:{determiners})\s+(?:\w+\s+)?(?:{names})\b"
        # a place it is used in ("in the articles" or "in a beautiful box" name no place)
        rf"|\b(?:in|into)\s+(?:{determiners})\s+(?:\w+\s+)?(?=(?:{PLACES})\b)(?:{names})\b"
        rf"|\b(?:use|used|apply|applied|put|rub|spread)\s+(?:(?:it|them|this|these|that)\s+)?"
        rf"(?:on|to|in|into)\s+"
        rf"(?:{determiners})\s+(?:\w+\s+)?(?:{names})\b")


_NOT_NAME_WORDS = STOP_WORDS | OPINION_WORDS  # capitalised, they start a title-case phrase


def _only_in_names(sentence: str, terms: tuple[str, ...]) -> bool:
    """Whether every use of `terms` in `sentence` is part of a capitalised name mid-sentence
    ("I love Entertainment Weekly": a title, not the aspect entertainment). Title-case text
    ("Great Food And Service") shows no names this way."""
    words = _CASED_WORD.findall(sentence)
    if sum(w[0].isupper() for w in words) > 0.5 * len(words):
        return False
    found, lowered = False, sentence.lower()
    for pattern in _term_patterns(terms):
        for match in pattern.finditer(lowered):
            found = True
            start, end = match.span()
            before = sentence[:start].rstrip()
            if not before or before[-1] in ".!?\"(" or not sentence[start].isupper():
                return False  # sentence-initial or lower case: the common noun
            earlier = _CASED_WORD.findall(before)
            # The sentence's first word is capitalised anyway, so it shows no name.
            neighbours = earlier[-1:] if len(earlier) > 1 else []
            neighbours += _CASED_WORD.findall(sentence[end:])[:1]
            if not any(w[0].isupper() and w.lower() not in _NOT_NAME_WORDS for w in neighbours):
                return False
    return found


def clause_praises(sentence: str, terms: Iterable[str]) -> bool:
    """Whether a reader takes `sentence` as praise of the aspect named by `terms`: the clause that
    names it (the whole sentence when no clause does) holds a positive opinion word and no
    negative word or negation ("Runs small, I had to return them" and "Terrible quality, the sole
    fell apart" are no praise of size or sole), in a sentence not framed as a complaint
    (`COMPLAINT_FRAMES`), naming the aspect as the thing praised (`_not_the_subject`) in a
    statement, not a condition or a question, with a positive word that praises this aspect
    (`_praising_words`)."""
    terms = tuple(terms)
    from pipelines import aspect_mining_zh  # here: it builds on this module

    if aspect_mining_zh.has_chinese(sentence):
        return aspect_mining_zh.clause_praises(sentence, terms)
    if (COMPLAINT_FRAMES & set(_TOKEN.findall(sentence.lower())) or _asked(sentence, terms)
            or _only_in_names(sentence, terms)):
        return False
    aside = _not_the_subject(terms)
    lowered = {t.lower() for t in terms}
    naming = _naming_clauses(sentence, terms)
    for clause in naming:
        words = _TOKEN.findall(clause)
        negated = any(w in NEGATIONS or w.endswith("n't") for w in words)
        if negated or _COUNTERFACTUAL.search(clause) or any(w in NEGATIVE_WORDS for w in words):
            return False
        if (aside is not None and aside.search(clause)) or _CONDITION.search(clause):
            return False
        if not _praising_words(words, lowered):
            return False
    return True


def _opinions(words: list[str]) -> tuple[int, int]:
    """(positive, negative) opinion words of a clause, a word negated by one of the three words
    before it counting as its opposite ("not bad" is positive, "isn't worth it" negative)."""
    positive = negative = 0
    for i, word in enumerate(words):
        if word not in OPINION_WORDS:
            continue
        negated = any(w in NEGATIONS or w.endswith("n't") for w in words[max(0, i - 3):i])
        is_positive = (word in POSITIVE_WORDS) != negated
        positive += is_positive
        negative += not is_positive
    return positive, negative


def clause_criticises(sentence: str, terms: Iterable[str]) -> bool:
    """Whether a reader takes `sentence` as criticism of the aspect named by `terms`: a clause that
    names it (the whole sentence when none does) holds negative opinions (negative words, or
    negated positive ones) at least as many as positive ones ("The content is a little weak",
    "the fit is not good" and "the battery dies fast" criticise; "Like the short articles, the
    information is helpful" and "Don't get me wrong" do not)."""
    from pipelines import aspect_mining_zh

    if aspect_mining_zh.has_chinese(sentence):
        return aspect_mining_zh.clause_criticises(sentence, terms)
    naming = _naming_clauses(sentence, terms)
    for clause in naming:
        positive, negative = _opinions(_TOKEN.findall(clause))
        if negative and negative >= positive:
            return True
    return False


def _is_candidate(word: str) -> bool:
    return (len(word) >= 3 and "'" not in word and word not in STOP_WORDS
            and word not in OPINION_WORDS)


def _is_aspect_word(word: str, excluded: frozenset[str]) -> bool:
    """Not a person, occasion or generic noun, not the product type (or its plural), not an
    adverb ("properly") or a past participle ("credited"; "speed" stays)."""
    if word in NON_ASPECTS or word in excluded or word.rstrip("s") in excluded:
        return False
    if word.endswith("ly") or (word.endswith("ed") and not word.endswith("eed") and len(word) > 4):
        return False
    return True


# A word written capitalised inside a sentence in this share of at least this many occurrences
# is a name (a brand, a shop, "Lightning Deals"), not an aspect. Acronyms (USB, ANC) stay.
NAME_SHARE, MIN_NAME_EVIDENCE = 0.6, 3
_SENTENCE_OPENERS = frozenset(".!?:;\"'(*-")


def _count_capitalised(sentence: str, inside: Counter, capitalised: Counter) -> None:
    """Counts each word's occurrences that do not open a sentence, and how many of those are
    capitalised like a name (not all capitals: acronyms are often aspects)."""
    for match in _CASED_WORD.finditer(sentence):
        before = sentence[:match.start()].rstrip()
        if not before or before[-1] in _SENTENCE_OPENERS:
            continue
        word = match.group()
        lower = word.lower()
        inside[lower] += 1
        if word[0].isupper() and not word.isupper():
            capitalised[lower] += 1


def product_type_words(titles: Iterable[str], min_share: float = 0.25) -> set[str]:
    """Words in at least `min_share` of the item titles ("gift", "card" for gift cards): the
    product type, not an aspect of it."""
    titles = [t for t in titles if isinstance(t, str) and t.strip()]
    if not titles:
        return set()
    counts: Counter[str] = Counter()
    for title in titles:
        title = _HTML_TAG.sub(" ", title)  # Amazon metadata titles may hold HTML
        counts.update(set(_WORD.findall(title.lower())))
    return {w for w, c in counts.items() if c >= min_share * len(titles) and _is_candidate(w)}


def product_words(titles: Iterable[str], reviews: Iterable[str]) -> tuple[set[str], str]:
    """The product type's words (what `vocab` keeps out of the lexicon) and where they came from:
    the item titles when they name one, else how many reviews name them."""
    words = product_type_words(titles)
    if words:
        return words, "item titles"
    return frequent_words(reviews), "review frequency"


def frequent_words(documents: Iterable[str], min_share: float = 0.35) -> set[str]:
    """Candidate words in at least `min_share` of the documents: without item titles, the words
    nearly every review names are taken for the product type."""
    counts: Counter[str] = Counter()
    total = 0
    for document in documents:
        total += 1
        counts.update({w for w in _WORD.findall(document.lower()) if _is_candidate(w)})
    return {w for w, c in counts.items() if total and c >= min_share * total}


@dataclass
class AspectLexicon:
    """Aspects, each a name and its surface terms, ordered by how often they carry an opinion."""

    aspects: list[dict] = field(default_factory=list)  # {"name", "terms", "count"}

    @property
    def names(self) -> list[str]:
        return [a["name"] for a in self.aspects]

    @property
    def term_to_aspect(self) -> dict[str, str]:
        return {term: a["name"] for a in self.aspects for term in a["terms"]}

    def to_json(self) -> dict:
        return {"aspects": self.aspects, "terms": self.term_to_aspect}

    @classmethod
    def from_json(cls, data: dict) -> "AspectLexicon":
        return cls(list(data["aspects"]))


def mine_aspects(
    sentences: Iterable[str],
    max_aspects: int = 30,
    min_count: int = 5,
    window: int = 3,
    min_opinion_ratio: float = 0.15,
    min_bigram_share: float = 0.25,
    min_determiner_ratio: float = 0.15,
    product_words: Iterable[str] = (),
    filter_non_aspects: bool = True,
) -> AspectLexicon:
    """Mine up to `max_aspects` aspects from `sentences` (English).

    A candidate counts as "near an opinion" when an opinion word lies within `window` words in the
    same clause. Kept: candidates near an opinion at least `min_count` times and in at least
    `min_opinion_ratio` of their occurrences; a bigram also needs to make up `min_bigram_share` of
    its first word's occurrences (a collocation such as "battery life", not "battery died"). A
    unigram must follow a determiner within two words in `min_determiner_ratio` of its
    occurrences: nouns do ("the price", "my hair"), verbs rarely do ("it smells great").
    With `filter_non_aspects`, `NON_ASPECTS`, `product_words` (see `product_type_words`), the
    products reviewers point at with "this"/"these" (`DEICTIC_SHARE`), adjectives and verbs told
    by the word before them (`ADJECTIVE_SHARE`, `VERB_SHARE`) and names (words mostly capitalised
    inside a sentence, `NAME_SHARE`) are no aspects, alone or as a bigram's first word (a product
    word not as its second either), and `SYNONYMS` are merged.
    """
    excluded = frozenset(w.lower() for w in product_words) if filter_non_aspects else frozenset()
    synonyms = SYNONYMS if filter_non_aspects else {}
    total: Counter[str] = Counter()
    near: Counter[str] = Counter()
    determined: Counter[str] = Counter()
    pointed_at: Counter[str] = Counter()  # occurrences after "this"/"these"
    adjective_cued: Counter[str] = Counter()  # right after "is", "feels", "very", ...
    after_subject: Counter[str] = Counter()  # right after "it", "they", ...
    inside_sentence: Counter[str] = Counter()  # occurrences not opening a sentence
    capitalised: Counter[str] = Counter()  # of those, written as a name ("Starbucks")
    for sentence in sentences:
        _count_capitalised(sentence, inside_sentence, capitalised)
        for clause in _CLAUSE.split(sentence.lower()):
            words = _WORD.findall(clause)
            if not words:
                continue
            opinion_at = [i for i, w in enumerate(words) if w in OPINION_WORDS]
            for i, word in enumerate(words):
                if not _is_candidate(word):
                    continue
                terms = [word]
                if i + 1 < len(words) and _is_candidate(words[i + 1]):
                    terms.append(f"{word} {words[i + 1]}")
                span = len(terms[-1].split()) - 1
                is_near = any(i - window <= j <= i + span + window for j in opinion_at)
                before = words[max(0, i - 2) : i]
                if any(w in DETERMINERS for w in before):
                    determined[word] += 1
                if any(w in _DEICTIC for w in before):
                    pointed_at[word] += 1
                if i and words[i - 1] in _ADJECTIVE_CUES:
                    adjective_cued[word] += 1
                if i and words[i - 1] in _SUBJECTS:
                    after_subject[word] += 1
                for term in terms:
                    total[term] += 1
                    if is_near:
                        near[term] += 1

    # Brands, shops and deal names ("Olive Garden", "Lightning Deals") are no aspects.
    names = {w for w, n in inside_sentence.items()
             if n >= MIN_NAME_EVIDENCE and capitalised[w] >= NAME_SHARE * n}
    if filter_non_aspects:  # the products reviewers point at ("this soap") join the product words
        excluded |= {w for w, n in pointed_at.items()
                     if total[w] >= MIN_DEICTIC_EVIDENCE and n >= DEICTIC_SHARE * total[w]}
        excluded |= {w for w, n in total.items() if " " not in w and n >= MIN_WORD_CLASS_EVIDENCE
                     and (adjective_cued[w] >= ADJECTIVE_SHARE * n
                          or after_subject[w] >= VERB_SHARE * n)}

    def allowed(word: str) -> bool:
        return not filter_non_aspects or (_is_aspect_word(word, excluded) and word not in names)

    def qualifies(term: str) -> bool:
        return near[term] >= min_count and near[term] >= min_opinion_ratio * total[term]

    # The share of a word's occurrences taken by its most frequent collocation as second word:
    # "life" is nearly always "battery life", so it is no aspect of its own.
    inside: Counter[str] = Counter()
    for term, count in total.items():
        if " " in term:
            second = term.split()[1]
            inside[second] = max(inside[second], count)
    unigrams = [
        t for t in near
        if " " not in t and qualifies(t) and determined[t] >= min_determiner_ratio * total[t]
        and inside[t] < 0.5 * total[t] and allowed(t)
    ]
    unigrams.sort(key=lambda t: (-near[t], t))
    groups: dict[str, dict] = {}
    owner_of: dict[str, str] = {}  # surface word -> key of its aspect group
    candidates = set(unigrams)
    for word in unigrams:  # most opinionated first
        stem = next((s for s in (word[:-1], word[:-2]) if word.endswith("s") and s in candidates),
                    word)  # "cards" -> "card", "smells" -> "smell"
        stem = synonyms.get(stem, stem)  # "cost" -> "price"
        if not allowed(stem):  # "mag" -> "magazine", the product type
            continue
        if stem not in groups:
            if len(groups) >= max_aspects:
                continue
            groups[stem] = {"name": stem, "terms": []}
        groups[stem]["terms"].append(word)
        owner_of[word] = stem
    bigrams = [
        t for t in near
        if " " in t and qualifies(t) and total[t] >= min_bigram_share * total[t.split()[0]]
        and allowed(t.split()[0]) and t.split()[1] not in excluded  # "battery life" stays
        and not t.endswith("ly")  # "ships securely"
    ]
    for bigram in sorted(bigrams, key=lambda t: (-near[t], t)):
        first, second = bigram.split()
        owner = owner_of.get(first) or owner_of.get(second)
        if owner is not None:
            groups[owner]["terms"].append(bigram)
        elif len(groups) < max_aspects:
            groups[bigram] = {"name": bigram, "terms": [bigram]}
    for key, group in groups.items():
        # Name an aspect by its singular, or by a collocation that is more frequent still
        # ("battery life" over "battery"); never by a plural or verb form ("smells").
        names = [key] + [t for t in group["terms"] if " " in t]
        group["name"] = max(names, key=lambda t: (near[t], -len(t)))
        group["count"] = sum(near[t] for t in group["terms"] if " " not in t) or near[group["name"]]
    ordered = sorted(groups.values(), key=lambda g: (-g["count"], g["name"]))[:max_aspects]
    return AspectLexicon(ordered)

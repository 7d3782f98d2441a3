"""Short display names: what a person calls an item in a push ("Hatchbox PLA 3D Printer Filament", "Gorilla
Glue", "Kreg Pocket Screws"), not its 120-character catalog title.

A catalog's own ``short_name`` column wins. Otherwise :func:`short_name` derives one from the title and brand:
the title's first clause (before the first comma, dash, bar, "for"/"with"), without model numbers, sizes,
counts and pack sizes, without words that only praise ("Premium", "Original"), led by the brand when the title
names it, and cut to its last words (an English noun phrase ends in its head noun) to fit ``MAX_CHARS``.
Derived names are cached per (title, brand).
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import SequenceMatcher
from functools import lru_cache

import regex

MAX_CHARS = 40
MAX_PRODUCT_WORDS = 5

_CLAUSE_BREAK = regex.compile(r",\s|\s[-–—|/]\s|(?<=\p{L})[-–—]\s|\s*[|;:]\s*"
                              r"|\s(?:for|with|by|fits|compatible|includes?|including)\s", regex.I)
_BRACKETS = regex.compile(r"\([^)]*\)?|\[[^\]]*\]?|\{[^}]*\}?")
_UNITS = (r"(?:mm|cm|m|km|in|inch|inches|ft|feet|foot|yd|yds|yards?|oz|ounces?|lbs?|pounds?|kg|g|gram|grams|mg|ml|l|"
          r"liters?|litres?|gal|gallons?|qt|quarts?|v|volts?|w|watts?|a|amps?|mah|psi|rpm|hz|khz|mhz|ghz|mp|gb|tb|"
          r"mil|gauge|ga|grit|awg|fl|ohms?|kohm|micron|microns|ply|pcs|pc|pk|ct|dia|ea|x|degrees?|°|\"|''|')")
_COUNT_NOUN = regex.compile(r"^(?:pieces?|packs?|count|sets?|pairs?|rolls?|sheets?|boxe?s?|bags?|units?|values?|"
                            r"sizes?|colou?rs?|types?|styles?)$",
                            regex.I)
_COLOURS = {"black", "white", "red", "blue", "green", "yellow", "orange", "purple", "pink", "grey", "gray", "brown",
            "silver", "gold", "clear", "olive", "navy", "beige", "ivory", "transparent", "natural", "multicolor"}
# tokens that are a model number, size, count or pack size: anything with a digit, plus unit words around them
_NUMERIC = regex.compile(r"^[^\p{L}]*\d")
# a count written in words where a title starts ("Ten 1 Inch Chrome Steel Bearing Balls"; not "Two Gang Box")
_COUNT_WORD = regex.compile(r"^(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|"
                            r"fifty|hundred|dozen)$", regex.I)
_KEEP = regex.compile(r"^(?:[234]D|[48]K|[345]G|\d-in-\d)$", regex.I)  # words, not sizes: 3D printer, 4K camera
_UNIT_WORD = regex.compile(rf"^{_UNITS}\.?$", regex.I)
_PRAISE = {"premium", "original", "genuine", "new", "professional", "pro", "best", "quality", "deluxe",
           "ultimate", "superior", "perfect", "great", "top", "brand", "authentic", "upgraded", "improved",
           "heavy-duty", "heavy", "duty", "industrial-grade", "commercial", "grade", "series", "style", "type",
           "model", "version", "edition", "official", "classic",
           # claims a push cannot make for the shop ("Fowler Full Warranty ... Jack Set")
           "full", "warranty", "lifetime", "guaranteed", "guarantee", "free", "available"}
# nouns a product name ends on (singular); a catalog adds its own through the category path's last word
HEAD_NOUNS = frozenset("""
adapter anchor bag band bar base battery bead beaker bearing belt bit blade block board bolt bottle bowl box brace
bracket brush bucket bulb burr cable caliper camera can cap capacitor card cart case caster chain charger clamp
cleaner clip coil compound connector container controller cord cover cup cutter cylinder desiccant dial dispenser
disc drill driver extractor fan fastener file filament filter fitting flask funnel fuse gauge glove glue grease
grinder hammer handle heater holder hook hose hydrometer insert jar kit knife label ladder lamp lantern level light
lock loupe lubricant magnet magnifier marker mask meter mat mirror module motor mount nail needle nozzle nut oil
organizer pad paint pan paper paste pen pencil pin pipe plate pliers plug pot potentiometer printer probe pump punch
rack rail ramp razor regulator relay resistor ring rivet rod roll roller rope ruler sander saw scale scissors screw
sealant sealer sensor set shears sheet sheeting shelf sleeve sling snips socket solder solution spray spring stand
staple stapler station strap strip switch syringe table tape tester thermometer thermostat timer tip tire tool
towel transistor tray tube tubing valve vise wheel wire wrap wrench
shoe boot jacket shirt pillow blanket mug kettle lamp speaker headphone charger watch
brad adaptor wiper rag fluid stabilizer assortment disconnect packet twine ointment adhesive terminal vacuum
caulk toothbrush extruder washer toothpaste tap sign bur oscilloscope cement stethoscope
borescope pipette hemostat wipe dolly converter matting jack hinge indicator coating coolant scalpel slide
refractometer tweezer spacer heatsink liner electrode locknut stud gasket coupling broom thermistor seal dish
sponge mandrel housing die reamer workstation transformer dressing absorber drum grommet cartridge hone reagent
pail collar vial cloth spatula labware gate laser endoscope lancet mixer crucible micrometer shaft sheave lid
freshener bumper tourniquet balance inductor generator knob scanner faucet winch hoist polisher tachometer arbor
receptacle scoop paddle reservoir pipettor thimble enclosure colorimeter oscillator condenser burette counter
cabinet epoxy countersink fixture transducer spectrometer transceiver antenna bandage strainer scissor pestle
dryer amplifier eyebolt turnbuckle trolley logger steamer actuator mop optocoupler disinfectant gear emitter
detector lotion solvent blower diode display multimeter microscope monitor gage fastener pen gun forcep
basket breadboard latch spade canister shim
""".split())
# category words that name a department, not a product ("Lab Supplies", "Adhesives & Sealants")
_DEPARTMENTS = {"supply", "product", "accessory", "equipment", "part", "tool", "material", "consumable", "component",
                "sealant", "adhesive", "chemical", "instrument", "hardware", "electrical", "fastener", "abrasive"}
# a word that continues a compound begun before it ("Self Drilling", "Regular Capacity", "Industrial Strength")
_CONTINUES = regex.compile(r"^(?:\p{L}+ing|capacity|strength|duty|size|sized|thread|head|grade|point|style)$", regex.I)
# a measure after a size, not a product word ("30 mm Long", "100 Feet/30 Meter")
_DIMENSION = {"long", "wide", "thick", "tall", "deep", "high", "dia", "diameter", "length", "width", "od", "id"}
_METRES = {"meter", "meters", "metre", "metres"}
# a collection of the head noun: part of the name ("Terminal Assortment", "Screw Kit")
_COLLECTION = {"assortment", "assortments", "kit", "kits", "set", "sets"}
# packaging, not the product: "3000 per Box"
_PACKAGING = {"box", "case", "pack", "carton", "bag", "roll", "count", "piece", "package", "pouch"}
_LINKING = {"per", "and", "&", "or", "of", "the", "a", "an", "in", "to", "on", "x", "+", "-", "this", "is", "are",
            "our"}


def _clean(text: str) -> str:
    text = text.replace("Â", " ").replace("\u00a0", " ")
    # "SiliconeTubing": a lost space before a head noun (brands such as PhysioGuard or KimWipes keep theirs)
    text = regex.sub(r"\b(\p{Lu}\p{Ll}{4,})(\p{Lu}\p{Ll}{3,})\b",
                     lambda m: f"{m[1]} {m[2]}" if _singular(m[2].lower()) in HEAD_NOUNS else m[0], text)
    text = regex.sub(r"[®™©]", "", text)
    text = regex.sub(r"\bhigh[- ](?:quality|grade|end|performance)\b", " ", text, flags=regex.I)  # not "High Density"
    text = regex.sub(r"(?<![\p{L}\d])(\d+:\d+)(\p{Lu}\p{Ll}{2,})", r"\1 \2", text)  # a ratio: "2:1Heat Shrink"
    return regex.sub(r"\s+", " ", text).strip()


def brand_in_title(title: str, brand: str) -> tuple[str, str]:
    """Where the title names the brand and how a push writes it: ``(as the title writes it, as shown)``, or
    ``("", "")`` when the title does not name it (a brand column holding "Blue" or "Casual", or a seller's name, is
    not put in front of the product). A title that misspells its own brand ("CMS Magneitcs" for CMS Magnetics)
    names it too, and the push shows the brand column's spelling."""
    brand = _clean(brand)
    if not brand:
        return "", ""
    parts = [p for p in regex.split(r"[\s\-]+", brand) if p]
    spelled = r"[\s\-]*".join(regex.escape(p) for p in parts)  # Oral B = Oral-B
    m = regex.search(rf"(?<![\p{{L}}\p{{N}}]){spelled}(?![\p{{L}}\p{{N}}])", title, regex.I)
    if m:
        return m[0], m[0]
    lead = " ".join(title.split()[:len(parts)])
    if len(parts) > 1 and lead[:1].lower() == brand[:1].lower() \
            and SequenceMatcher(None, lead.lower(), " ".join(parts).lower()).ratio() >= 0.85:
        return lead, " ".join(parts)
    for n in range(len(parts) - 1, 0, -1):  # "American Educational" of American Educational Products
        lead = r"[\s\-]*".join(regex.escape(p) for p in parts[:n])
        m = regex.search(rf"^{lead}(?![\p{{L}}\p{{N}}])", title, regex.I)
        if m and len(m[0]) >= 4:
            return m[0], m[0]
    return "", ""


def _display_case(word: str, shouting: bool = False) -> str:
    """ALL-CAPS words longer than four letters (three in a title that is all capitals) read as shouting in a
    push: HATCHBOX → Hatchbox, WRAP → Wrap; short acronyms (PLA, LED, USB) stay."""
    letters = regex.sub(r"[^\p{L}]", "", word)
    if len(letters) > (3 if shouting else 4) and letters.isupper():
        return "-".join(p[:1] + p[1:].lower() for p in word.split("-"))
    return word


def _product_words(clause: str, brand: str, head_nouns: frozenset[str] = frozenset(), leaf: str = "") -> list[str]:
    """The words of one title clause that name the product: no brand (where the title writes it), model numbers,
    sizes, counts or praise; ending on the category's own noun where the clause has it ("Digital Temperature
    Controller", not "... Controller Fahrenheit Celsius Thermostat"), else on its last head noun."""
    if brand:
        clause = regex.sub(rf"(?<![\p{{L}}\p{{N}}]){regex.escape(brand)}(?![\p{{L}}\p{{N}}])", " ", clause,
                           count=1, flags=regex.I)
    brand_words = {w.lower() for w in regex.findall(r"[\p{L}\p{N}]+", brand)}
    out: list[str] = []
    gaps: set[int] = set()  # where a size, count or model number stood between two kept words
    after_number = after_unit = ends_on_digit = False
    for i, w in enumerate(clause.split()):
        bare = w.strip(".,;:!?\"'()")
        low = bare.lower()
        if i == 0 and _COUNT_WORD.match(bare):
            after_number = True
            continue
        counted = (after_number or ends_on_digit) and (bool(_COUNT_NOUN.match(bare)) or low in _METRES) \
            or after_unit and low in _DIMENSION
        unit = bool(_UNIT_WORD.match(bare))
        after_unit = after_number and unit
        after_number = (bool(_NUMERIC.match(bare)) and not _KEEP.match(bare)) or after_unit
        ends_on_digit = bool(regex.search(r"\p{L}.*\d$", bare)) and not _KEEP.match(bare)  # "Feet/30 Meter"
        if not bare or after_number or counted or unit or low in _PRAISE or not regex.search(r"\p{L}", bare) \
                or regex.search(r"\p{L}.*\d|\d.*\p{L}", bare) and not _KEEP.match(bare):  # model numbers: DPG200
            if out and (after_number or counted or regex.search(r"\d", bare)):
                gaps.add(len(out))
            continue
        out.append(bare)
    while out and (out[0].lower() in _LINKING or out[0].lower() in brand_words):  # "Gripwell Original Gripwell Glue"
        out.pop(0)
        gaps = {g - 1 for g in gaps if g > 1}
    while out and (out[-1].lower() in _LINKING or out[-1].lower() in _COLOURS) and len(out) > 1:
        out.pop()
    own = [i for i, w in enumerate(out) if leaf and _singular(w.lower()) == leaf]
    heads = own[:1] or [i for i, w in enumerate(out) if _singular(w.lower()) in head_nouns][-1:]
    if heads and heads[0] >= 1:  # end the phrase on its head noun: "Kapton Tape Sheets" (not "... Thick")
        end = heads[0] + 1
        head = out[heads[0]].lower()
        if end < len(out) and (out[end].lower() in _COLLECTION  # "Electrical Terminal Assortment"
                               or own and head == _singular(head) and end not in gaps  # a singular noun leads
                               and _singular(out[end].lower()) in head_nouns - _PACKAGING  # a compound that
                               and out[end].lower()[:3] != head[:3]  # (not the same noun again: "Tubing Tube")
                               and (end + 1 == len(out) or out[end + 1].lower() in _LINKING)):  # ends the clause:
            end += 1  # "Kelly Locking Hemostat Forceps" (not "Ball Bearing Pillow" of "... Pillow Block")
        if heads[0] in gaps and out[heads[0] - 1].lower()[:3] == out[heads[0]].lower()[:3]:
            end = heads[0]  # "Heat Shrink Tube 5 Colors 8 Sizes Tubing": the same noun again after the sizes
        start = max((g for g in gaps if g < heads[0]), default=0)  # "Wire Wrap Sleeve 3 mm ... Heat Shrink Tubing"
        out = out[start if end - start >= 2 and end > MAX_PRODUCT_WORDS else 0:end]
    seen: set[str] = set()
    for i in range(len(out) - 1, -1, -1):  # "3D ABS 3D Printer Filament": keep a word's last occurrence
        if out[i].lower() in seen:
            del out[i]
        else:
            seen.add(out[i].lower())
    return out


def _ends_on_head(words: list[str], head_nouns: frozenset[str]) -> bool:
    return bool(words) and _singular(words[-1].lower()) in head_nouns


# nouns of what a thing does, whatever the catalog: Eliminator, Sharpener, Humidifier, Sanitizer, Remover (a title's
# first clause that ends on one names the product)
_AGENT_NOUN = regex.compile(r"\p{L}{3,}(?:ator|izer|iser|ener|ifier|remover|aner)s?$", regex.I)


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


@lru_cache(maxsize=1 << 14)  # names recur: the guardrails ask once per user's items
def ends_plural(name: str) -> bool:
    """Whether a name's last word is an English plural ("Bostitch Brads", "Copper Lugs"), not a singular in -s
    ("Glass", "Cactus", "Electronics", "Lens"): copy must say "are", not "is"."""
    last = regex.sub(r"[^\p{Latin}]", "", name.split()[-1]).lower() if name.split() else ""
    return len(last) > 3 and last.endswith("s") and not last.endswith(("ss", "us", "is", "ics", "ous")) \
        and last not in _SINGULAR_S


_PLURAL_VERB = {"is": "are", "has": "have", "was": "were"}


def plural_agreement(text: str, names: Iterable[str]) -> str:
    """``text`` with the verb after each plural name made plural: "The Bostitch Brads is $12.49" -> "The
    Bostitch Brads are $12.49" (a small model copies "The X is $Y" from its examples whatever X is)."""
    lower = text.lower()
    for name in names:
        if name and ends_plural(name) and name.lower() in lower:
            agreed = _verb_after(name).sub(_plural_verb, text)
            if agreed != text:
                text, lower = agreed, agreed.lower()
    return text


@lru_cache(maxsize=1 << 14)  # a user's item names, for each of the user's candidates
def _verb_after(name: str) -> regex.Pattern[str]:
    """``name`` (as a word) and the verb after it, in any case."""
    return regex.compile(rf"(?<![\p{{L}}\p{{N}}])({regex.escape(name)})\s+(is|has|was)\b", flags=regex.I)


def _plural_verb(m: regex.Match[str]) -> str:
    return f"{m[1]} {_PLURAL_VERB[m[2].lower()]}"


def with_article(text: str, names: Iterable[tuple[str, str]]) -> str:
    """``text`` with "The" before a product name that opens it with "is"/"are" and no brand in front: "Electrical
    Terminal Assortment is $293.99" -> "The Electrical Terminal Assortment is $293.99" ("Gorilla Glue is $5" keeps
    its brand as the subject). ``names`` are (display name, brand) pairs."""
    for name, brand in names:
        if brandless(name, brand) and name and text.startswith(name) and _subject(name).match(text):
            return f"The {text}"
    return text


def brandless(name: str, brand: str) -> bool:
    """Whether ``name`` does not open on its brand (copy that opens on it as a subject wants "The")."""
    return not brand or not name.lower().startswith(brand.split()[0].lower())


@lru_cache(maxsize=1 << 14)
def _subject(name: str) -> regex.Pattern[str]:
    """``name`` opening a text as the subject of "is" or "are"."""
    return regex.compile(rf"{regex.escape(name)}\s+(?:is|are)\b")


_TRADEMARK = regex.compile(r"^\p{Lu}?\p{Ll}+\p{Lu}\p{L}*$")  # a capital inside the word: KimWipes, PhysioGuard, iPad
_SINGULAR_S = frozenset("series species news lens gas chassis canvas atlas bias plus thermos kudos".split())


def _fit(brand: str, words: list[str], limit: int) -> str:
    """The brand and the last words of the product phrase that fit ``limit`` characters. A cut never starts on
    the second half of a compound ("Self Drilling Screws" is not cut to "Drilling Screws") or on a linking word."""
    cut = max(len(words) - MAX_PRODUCT_WORDS, 0)
    while cut < len(words):
        while cut and cut < len(words) - 1 and (words[cut].lower() in _LINKING or _continues(words, cut)
                                                or _TRADEMARK.match(words[cut + 1])):
            cut += 1  # nor on the word before a trademark: "KimWipes Delicate Task Wipers", not "Science KimWipes .."
        name = " ".join(([brand] if brand else []) + words[cut:])
        if len(name) <= limit:
            return name
        cut += 1
    return brand[:limit].rstrip()


def _continues(words: list[str], i: int) -> bool:
    """Whether ``words[i]`` is the second half of a compound begun by the word before it: "Self Drilling",
    "Regular Capacity" (a short first half or a noun-like second), not "Collapsible Trekking"."""
    return bool(_CONTINUES.match(words[i])) and (not words[i].lower().endswith("ing") or len(words[i - 1]) <= 5)


# a pack, set or box of several of the product: "(Pack of 3)", "6-Count", "10 Piece ... Box", "3-Piece", "6 Rolls"
_PACK = regex.compile(r"\b(?:pack|set|box|case|bag|bundle|lot) of (\d+)\b"
                      r"|(?<![\d./])\b(\d+)[\s-]?(?:packs?|pk|pcs|pc|pieces?|count|ct|rolls)\b", regex.I)
# what is sold by quantity, not counted: no plural for a pack of it ("Gorilla Tape", not "Gorilla Tapes")
_MASS = frozenset("""tape glue filament paper tubing wire oil paint grease sealant adhesive epoxy foam solution cleaner
caulk cement lubricant wrap sheeting cloth matting coating solder paste compound lotion ointment disinfectant solvent
coolant reagent dressing twine rope freshener sleeve toothpaste ink toner powder gel spray water""".split())


# nouns a pack holds several of that do not end a product name by themselves ("... Rough Surfaces" is no name)
_COUNTABLE = frozenset("surface sheet square rectangle tile pad panel disc disk card".split())


def _plural(word: str) -> str:
    low = word.lower()
    if low.endswith("y") and low[-2:-1] not in set("aeiou"):
        return word[:-1] + "ies"
    if low.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if low.endswith("fe"):
        return word[:-2] + "ves"
    if low.endswith("lf"):
        return word[:-1] + "ves"
    return word + "s"


def _counted(name: str, title: str, heads: frozenset[str] | set[str], limit: int) -> str:
    """``name`` with its head noun in the plural when the title sells several ("Lumen Co. Warm White 2-Pack Smart
    LED Bulb" -> "... Smart LED Bulbs"): a singular name for a pack of three misstates what the price buys. A
    collection ("Pole Set", "Screw Kit"), a plural name and what is sold by quantity ("Tape") stay."""
    words = name.split()
    last = words[-1].lower() if words else ""
    container = last in {"box", "case"} and regex.search(r"\d+[\s-]?(?:pieces?|pcs?)\b", title, regex.I)
    if not last.isalpha() or len(words) < 2 or last in _COLLECTION | _MASS or ends_plural(name) or container \
            or last in {"pack", "package", "count", "piece", "carton", "pouch"} \
            or last.endswith("ics") \
            or _singular(last) not in heads | _COUNTABLE and not _AGENT_NOUN.search(last):
        return name
    counts = [int(a or b) for a, b in _PACK.findall(title)]  # "(Pack of 3)", "8 brushes"
    counts += [int(n) for n in regex.findall(rf"\b(\d+)\s+{regex.escape(_plural(last))}\b", title, regex.I)]
    if not counts or max(counts) < 2:
        return name
    plural = " ".join([*words[:-1], _plural(words[-1])])
    return plural if len(plural) <= limit else name


def short_name(title: str, brand: str = "", category: str = "", limit: int = MAX_CHARS) -> str:
    """A short display name for a catalog item (see the module docstring); never longer than ``limit``
    characters and never cut inside a word. The last word of ``category`` ("... Pipe Fittings") is the item's
    own head noun: the name ends on it where the title has it, and takes it where the title names no product.
    A pack of several takes the plural ("Hose Clamps" for a 10-piece box)."""
    return _names(title, brand, category, limit)[1]


def pack_singular(title: str, brand: str = "", category: str = "", limit: int = MAX_CHARS) -> str:
    """The singular of a pack's plural name, its last two words ("Cutting Board" of "Ember & Oak Bamboo Cutting
    Boards" for a 3-piece set), or "" when the name was not made plural for a pack: copy that calls the pack by
    it misstates what the price buys."""
    one, shown = _names(title, brand, category, limit)
    return "" if shown == one else " ".join(one.split()[-2:])


@lru_cache(maxsize=65536)
def _names(title: str, brand: str, category: str, limit: int) -> tuple[str, str]:
    """An item's name as one of it, and as shown (the plural for a pack of several)."""
    leaf = regex.findall(r"\p{L}+", category.lower())
    # an item taxonomy's leaf ("... Pipe Fittings") names the product; a department ("Camping & Hiking") does not
    own = _singular(leaf[-1]) if leaf and (leaf[-1].endswith("s") or leaf[-1] in HEAD_NOUNS) else ""
    heads = HEAD_NOUNS | ({own} if own else set())
    one = _short_name(title, brand, leaf, own, heads, limit)
    return one, _counted(one, title, heads, limit)


def _short_name(title: str, brand: str, leaf: list[str], own: str, heads: frozenset[str], limit: int) -> str:
    title = _clean(title)
    long_words = [w for w in title.split() if len(w) > 3]
    shouting = sum(w.isupper() for w in long_words) * 2 > len(long_words)  # an all-capitals title
    if len(title) <= 30 and not _CLAUSE_BREAK.search(title) and not _BRACKETS.search(title):
        return " ".join(_display_case(w) for w in title.split())  # "Atlas ESR70", "BC547 Transistor"
    named, shown = brand_in_title(title, brand)
    shown = " ".join(_display_case(w, shouting) for w in shown.split())
    if len(shown) > limit // 2:  # "Rubbermaid Commercial Products": its first word names it well enough
        shown = shown.split()[0]
    body = _BRACKETS.sub(" ", title)
    clauses = [_product_words(c, named, heads, own) for c in _CLAUSE_BREAK.split(body)]
    clauses = [[_display_case(w, shouting) for w in c] for c in clauses
               if any(not _COUNT_NOUN.match(w) and w.lower() not in _LINKING for w in c)]
    if clauses and len(clauses[0]) == 1 and len(clauses) > 1 and not shown:
        lead, rest = clauses[0][0], clauses[1]  # "PhysiciansCare by ... Eye Flush Station"
        if lead.lower() in (w.lower() for w in rest):  # "Hydrometer - This is a Triple Scale Hydrometer"
            return _fit("", rest, limit)
        return _fit(lead, rest, limit)
    if not clauses:
        return _fit(shown, [], limit) or title[:limit].rsplit(" ", 1)[0]
    words = clauses[0]
    named = _ends_on_head(words, heads) or bool(words and _AGENT_NOUN.search(words[-1]))
    if not named:  # "Industrial Strength Extreme Outdoor | ... | Tape – 10ft x 1in"
        words = next((c for c in clauses[1:4]
                      if _ends_on_head(c, heads) and _singular(c[-1].lower()) not in _PACKAGING), words)
    if not named and not _ends_on_head(words, heads) and own and own not in _DEPARTMENTS and len(words) <= 3 \
            and not any(_singular(w.lower()).endswith(own) for w in words):  # the category's noun: "... Strips", once
        words = [*words, leaf[-1].capitalize()]
    return _fit(shown, words, limit)

"""Extractive answering: the answer is a span that is printed in the image, chosen by evidence, not invented.

For short factual questions about a document ("What is the total?", "How much was the tax?", "Who is the
sender?", "What is the seat number?") a small model that *generates* its answer often copies the wrong number
from the OCR text or makes one up. Extraction instead

1. **types the question** — what kind of answer it asks for: an amount of money, a count, a date, a time, a code or
   number, a name, an e-mail address, a phone number (``None``: an open question — ``auto`` mode then generates);
2. **collects candidate spans** from the OCR text of the image: amounts, dates, times, codes, numbers, names, the
   cells of a ``label | value`` row and whole short lines, each remembering its *label* — the rest of its row, or
   the line above when the value stands alone;
3. **scores** every candidate of the asked type by
   * label evidence: how many of the question's content words (with a few standard synonyms: *sender* ~ *from*,
     *destination* ~ *to*, *pay* ~ *due*, ...) its label contains, tolerant of OCR slips, preferring the most
     specific label ("Tax 1.20" over "Total incl. tax 18.55" for "How much was the tax?"); a span's label is the
     words before it in its cell, else the cell before it, else — when the span is its whole line — the bare
     heading above; words only after it count half;
   * for names, the shape of the kind of name asked for: a person's (two or three capitalised words, no
     function word), an organisation's or a place's (a generic word such as *Press*, *Energy*, *Centre*, *Pool*),
     a title (not a person's name); for the issuer of a document (shop, brand, company) its first lines; for the
     end or start of a printed range ("Open 10:00 - 22:30"), that end;
   * the language model's own belief: the mean log-probability of the span as the answer, given the prompt the
     model would otherwise generate from (context + question), scored for all candidates in one forward packed
     after the shared prompt (:meth:`core_model.api.AdapterV2Model.continuation_logprobs`), weighted low
     (``lm_weight``: a 135M model's belief breaks ties, the printed labels decide); the term is bounded
     (:data:`LM_FLOOR`), so when the evidence puts one span further ahead than it can reach the forward is skipped;
4. answers with the best span, exactly as printed.

Everything is generic: no rule names a document kind. The module is pure text processing plus one scoring call;
it works on any expert whose output is lines of text (OCR-like experts of your own included).
"""
from __future__ import annotations

import difflib
import functools
import importlib
import logging
import pkgutil
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ANSWER_MODES", "Candidate", "Extraction", "answer_type", "candidates", "extract_answer",
           "label_match"]

log = logging.getLogger(__name__)

ANSWER_MODES = ("generate", "extract", "auto")

# --------------------------------------------------------------------------------------- question typing
#: (answer type, pattern on the lower-cased question), first match wins
_QUESTION_TYPES: list[tuple[str, str]] = [
    ("email", r"\b(e-?mail|email address)\b"),
    ("phone", r"\b(phone|telephone|tel|mobile|cell|fax|call|be (called|reached|contacted|phoned))\b"),
    ("website", r"\b(website|web site|url|web address|homepage|online|on the web|internet)\b"),
    ("quantity", r"\b(weight|weigh|weighs|net wt|volume|size|capacity|length|width|height|depth|dimensions?|"
                 r"how (heavy|big|large|long|tall|wide)|dose|dosage|strength|contents?|contains?|quantity|qty)\b"),
    ("money", r"\bhow much\b|\b(hourly|daily|nightly|weekly|monthly) rate\b|\brate per\b|"
              r"\b(cost|costs|costed|price|prices|priced|total|subtotal|sub-total|amount|pay|paid|"
              r"payable|charge|charged|fee|fees|fare|tax|vat|tip|gratuity|discount|balance|spent|spend|owed|owe|"
              r"refund|deposit|sum|change|cash|paid in|tendered)\b|[$€£]"),
    ("count", r"\bhow many\b"),
    ("time", r"\bwhat time\b|\b(at what time|opening hours|hours|o'clock|departs? at|arrives? at)\b|"
             r"\b(start|end|check-?in|check-?out|departure|arrival|opening|closing|finish|pick-?up|collection|"
             r"appointment|boarding|doors|kick-?off|meeting|session) time\b"),
    ("date", r"\b(when|date|dated|day|expire|expires|expiry|expiration|due|valid|until|deadline|born|issued|"
             r"birthday|year)\b"),
    ("code", r"\b(number|no|num|code|id|ref|reference|tracking|serial|isbn|sku|seat|gate|platform|room|"
             r"flight|account|zip|postcode|postal code|row|table|aisle|track|terminal|booking|confirmation|"
             r"order|ticket|member|policy|plate|licen[cs]e|batch|lot|model)\b"),
    ("name", r"\b(who|whom|whose|name|named|called|surname|forename|"
             r"author|wrote|written|sender|recipient|addressee|customer|client|applicant|member|employee|student|"
             r"passenger|patient|doctor|physician|prescriber|pharmacist|manager|cashier|server|waiter|host|owner|"
             r"holder|guest|speaker|artist|band|performer|driver|tenant|buyer|seller|payee|payer|contact|person|"
             r"signed|company|firm|shop|store|restaurant|cafe|hotel|bank|business|brand|maker|manufacturer|"
             r"supplier|provider|vendor|merchant|publisher|issuer|organi[sz]er|organi[sz]ation|title|venue|"
             r"place|city|town|country|street|address|destination|where)\b"),
]

#: which candidate kinds answer which question type
_TYPE_KINDS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "phone": ("phone",),
    "website": ("website",),
    "money": ("money",),
    "count": ("integer", "number", "quantity"),
    "time": ("time",),
    "date": ("date", "time"),
    "code": ("code", "integer", "number"),
    "name": ("name", "address", "cell", "line"),
    "quantity": ("quantity", "number", "integer", "cell"),
    "field": ("cell", "code", "integer", "number", "quantity", "name", "date", "time", "money", "email", "phone",
              "website", "address"),
}
#: a "field" question is answered only by a span whose label says so (else ``auto`` generates)
_FIELD_MIN_LABEL = 0.4
#: what kind of name a "name" question asks for
#: questions after someone's job ("What is her job title?", "What does Wiktor Lindqvist do?")
_JOB_QUESTION = re.compile(r"\bjob title\b|\b(job|position|role|occupation|profession|designation)\b|"
                           r"\bwhat does [\w .'’-]+ do\b|\bworks? as\b")
_ROLES: list[tuple[str, re.Pattern[str]]] = [
    ("job", _JOB_QUESTION),
    ("title", re.compile(r"\b(title|titled|headline|called|name of (the|this) (book|film|movie|show|event|album|song|"
                         r"exhibition|play|tour|concert|festival|product))\b")),
    ("org", re.compile(r"\b(company|firm|shop|store|restaurant|cafe|café|hotel|bank|business|brand|maker|"
                       r"manufacturer|made by|supplier|provider|vendor|merchant|publisher|published|publishes|"
                       r"issuer|issued by|pharmacy|clinic|organi[sz]er|organi[sz]ation|sponsor)\b")),
    ("address", re.compile(r"^(?!.*\b(city|town|village|country|venue)\b).*\b(address|located|street|based)\b")),
    ("place", re.compile(r"\b(venue|place|destination|city|town|village|country|location|station|airport|"
                         r"building|museum|gym|park|library|school|hospital|club|where)\b")),
    ("person", re.compile(r"\b(who|whom|whose|author|wrote|written by|surname|first name|last name|family name|"
                          r"forename|given name|applicant|customer|client|passenger|patient|doctor|physician|"
                          r"prescriber|pharmacist|member|holder|employee|student|guest|tenant|driver|cashier|"
                          r"waiter|server|host|speaker|artist|performer|signed)\b")),
]
_FUNCTION_WORDS = set("of the and in for a an at on to by with from or de la le du van von".split())
#: words that end the names of organisations / of places (generic English, no document kind)
_ORG_WORDS = set("""ltd limited inc llc plc gmbh ag sa co corp corporation company group holdings press books
publishing publishers house editions media studio studios bank energy power electric electricity gas water broadband
telecom mobile insurance services solutions systems industries foods trading market supermarket grocery pharmacy
bakery cafe café restaurant kitchen bar grill bistro trattoria diner hotel store stores shop hardware motors
airlines airways rail railways transport logistics express courier post clinic labs laboratories solicitors
legal law chambers society council club association trust foundation agency institute academy events vets
veterinary mutual cargo freight metals growers farm farms dairy""".split())
#: words that end the title of a document ("Consignment Note", "Case Summary", "ENTRY PASS"): such a line names
#: what the document is, never a person, an organisation or a place
_DOCUMENT_WORDS = set("""note notice letter order summary receipt confirmation report record certificate pass permit
plan statement invoice bill ticket card form list registration appointment application agreement contract schedule
itinerary booking request slip voucher quote quotation estimate memo memorandum minutes policy licence license
details sheet log summary overview renewal reminder acknowledgement acknowledgment claim request transcript
prescription label manifest waybill""".split())
_PLACE_WORDS = set("""park pool centre center hall station airport terminal street road avenue lane square museum
library theatre theater stadium arena gardens garden beach market church cathedral school college university
hospital clinic hotel zoo gallery club plaza court bridge harbour harbor port pier tower castle palace cinema
field ground dome pavilion auditorium venue""".split())


def _name_role(question: str) -> str | None:
    q = question.lower()
    if re.search(r"\bwho (published|publishes|made|makes|sells|sold|issued|issues|organi[sz]ed|runs)\b", q):
        return "org"
    for role, pattern in _ROLES:
        if pattern.search(q):
            return role
    return None


#: label words that say which kind of name a field holds
_LABEL_ROLES = {
    "person": set("""name passenger customer client patient member holder cardholder author by doctor dr applicant
               guest driver tenant recipient attn attention signed prescriber pharmacist contact""".split()),
    # not "from"/"to"/"address": a parcel's or a letter's From and To are people as often as places
    "place": set("destination venue city town country location station origin".split()),
    "org": set("company publisher issuer supplier provider vendor merchant brand bank pharmacy".split()),
}


def _label_role(label: str) -> str | None:
    words = set(_words(label))
    found = [role for role, vocab in _LABEL_ROLES.items() if words & vocab]
    return found[0] if len(found) == 1 else None


@functools.lru_cache(maxsize=1)
def given_names() -> frozenset[str]:
    """Lower-case given names of many languages — the name lists of Faker's person providers (MIT; ~16,000 ASCII
    names, 80 locales), read once (~0.2 s). Empty when Faker (the ``experts`` extra) is not installed: a person's
    name is then told by its shape alone."""
    try:
        import faker.providers.person as people
    except ImportError:
        log.info("faker is not installed: person names are recognised by their shape only")
        return frozenset()
    names: set[str] = set()
    for module in pkgutil.iter_modules(people.__path__):
        try:
            provider = importlib.import_module(f"{people.__name__}.{module.name}").Provider
        except Exception:  # noqa: BLE001 - one locale that does not import costs its names, nothing else
            continue
        for attr in ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"):
            value = provider.__dict__.get(attr)
            if isinstance(value, (list, tuple, dict)) or hasattr(value, "keys"):
                names.update(n.lower() for n in value if isinstance(n, str) and n.isascii() and n.isalpha())
    return frozenset(names)


def _shape(role: str | None, text: str) -> float:
    """How much a span looks like the kind of name asked for (0..1): a person's name is two or three capitalised
    words without function words or organisation/place words; an organisation's or a place's name has one of
    their generic words ("Press", "Energy", "Centre", "Pool"); a title is not a person's name."""
    if role is None:
        return 0.0
    if _PATTERNS_BY_KIND["address"].fullmatch(text.strip()):
        return {"address": 1.0, "place": 0.5}.get(role, 0.0)
    if role == "address":
        return 0.0
    words = re.findall(r"[A-Za-z][A-Za-z'’-]*", text)
    if not words or any(ch.isdigit() for ch in text) or _is_document_title(words):
        return 0.0
    lower = [w.lower() for w in words]
    if role == "job":
        return 1.0 if _is_job_title(words) and len(words) <= 4 else 0.0
    if _is_job_title(words) and role in ("person", "org", "place"):
        return 0.0  # "Sales Manager" is two capitalised words but no one's name
    capitalised = all(w[0].isupper() for w in words if w.lower() not in _FUNCTION_WORDS)
    org = any(w in _ORG_WORDS for w in lower)
    place = any(w in _PLACE_WORDS for w in lower)
    function = any(w in _FUNCTION_WORDS for w in lower)
    title_case = all(w[0].isupper() and not w.isupper() for w in words) if capitalised else False
    person = 2 <= len(words) <= 3 and capitalised and not (org or place or function)
    if role == "person":
        if person:
            known = given_names()
            if known:  # a given name among its words ("Alice Moreau", "TAKAHASHI, Maria") tells a person
                given = any(w.lower() in known for w in words)
                return (1.0 if given else 0.5) * (1.0 if title_case else 0.8)
            return 1.0 if title_case else 0.6
        return 0.3 if len(words) == 1 and capitalised and not (org or place or function) else 0.0
    if role == "org":
        return 1.0 if org else (0.3 if capitalised and len(words) <= 4 else 0.0)
    if role == "place":
        if place:
            return 1.0
        return 0.6 if capitalised and len(words) <= 2 and not (org or function) else 0.0
    if role == "title":
        return 0.0 if person else (0.6 if capitalised else 0.2)
    return 0.0


def _is_document_title(words: Sequence[str]) -> bool:
    """"Consignment Note", "QUALITY INSPECTION RECORD", "Certificate of Insurance": the phrase names a kind of
    document (its first or last word is a document word)."""
    return bool(words) and (words[-1].lower() in _DOCUMENT_WORDS or
                            (words[0].lower() in _DOCUMENT_WORDS and len(words) >= 3 and words[1].lower() == "of"))


#: words that end a job title ("Sales Manager", "Senior Software Engineer"): generic English, no document kind
_JOB_WORDS = set("""manager director engineer designer developer consultant analyst officer assistant coordinator
advisor adviser specialist executive accountant architect administrator supervisor lead head partner founder
co-founder president chair chairman chairwoman secretary treasurer clerk technician nurse teacher lecturer professor
researcher scientist editor writer producer agent representative rep associate intern trainee planner buyer
strategist ceo cto cfo coo vp surveyor solicitor lawyer attorney paralegal mechanic electrician plumber chef cook
receptionist cashier photographer illustrator curator librarian pharmacist therapist counsellor counselor
inspector auditor controller recruiter trainer coach instructor programmer owner principal""".split())


def _row_keys(question: str) -> list[str]:
    """The names a question looks a row up by: its capitalised words after the first ("What does the Caesar salad
    cost?" -> ["caesar"], "What position does Chiara Carvalho hold?" -> ["chiara", "carvalho"])."""
    words = re.findall(r"[A-Za-z][A-Za-z'’-]*", question)[1:]
    return [w.lower() for w in words if w[0].isupper() and w.lower() not in _STOP and len(w) > 1]


def _is_job_title(words: Sequence[str]) -> bool:
    return bool(words) and words[-1].lower() in _JOB_WORDS


#: questions after whoever issued the document: its first lines name it (a shop's receipt, a brand's label)
_ISSUER = re.compile(r"\b(company|firm|shop|store|restaurant|cafe|café|hotel|bank|business|brand|maker|manufacturer|"
                     r"supplier|provider|vendor|merchant|issuer|pharmacy|clinic|hospital|school|library|"
                     r"organi[sz]ation|where (was|were|is|are) (this|these|it|they) (bought|purchased|from|made)|"
                     r"who is (this|the) (document|letter|statement|notice|report|record|form|invoice|bill) from)\b")

_STOP = set("""a an the this that these those is are was were be been am do does did of on in at to for from by
with and or what which who whom whose how when where why it its it's there here please tell me i my you your we our
they their can could would should will shall may might must say says said shown show written printed on image
picture photo document page much many have has had get gets got given listed stated mentioned appear appears
booked assigned chosen measured applies apply
receipt menu ticket form card bill invoice sign label poster letter note flyer leaflet brochure cover book
package parcel box bottle screen screenshot sticker tag""".split())
"""The question words above name the document, not a field of it ("the total on this receipt")."""
#: words that name the kind of answer rather than the field: they count, but less
_TYPE_WORDS = set("""number no num code id name date time amount price cost costs total value""".split())
#: label words that only say a value is a number ("Seal no."): no less specific for it
_NUMBERING = {"no", "nr", "num", "number", "#"}
#: standard field-name synonyms (question word -> label words that mean the same)
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "sender": ("from", "shipper", "sent"),
    "from": ("sender", "shipper"),
    "recipient": ("to", "ship", "deliver", "addressee", "consignee"),
    "addressee": ("to", "recipient"),
    "wrote": ("by", "author", "written"),
    "written": ("by", "author"),
    "author": ("by", "written"),
    "cost": ("price",),
    "price": ("cost",),
    "phone": ("tel", "telephone", "mobile", "cell", "ph"),
    "telephone": ("tel", "phone"),
    "email": ("e-mail", "mail"),
    "due": ("payable", "deadline", "by"),
    "expire": ("expiry", "expires", "exp", "valid", "until"),
    "expires": ("expiry", "expire", "exp", "valid", "until"),
    "expiry": ("expires", "expire", "exp", "valid", "until"),
    "tip": ("gratuity",),
    "gratuity": ("tip",),
    "tax": ("vat", "gst"),
    "vat": ("tax",),
    "discount": ("off", "savings", "saving", "promo"),
    "tracking": ("track", "trk"),
    "number": ("no", "nr", "num", "#"),
    "date": ("dated", "on"),
    "address": ("addr",),
    "quantity": ("qty",),
    "weigh": ("weight", "wt", "net"),
    "weighs": ("weight", "wt", "net"),
    "weight": ("wt", "net"),
    "heavy": ("weight", "wt", "weighs", "mass"),
    "identifies": ("id", "ref", "reference"),
    "identify": ("id", "ref", "reference"),
    "interest": ("apr", "rate"),
    "contain": ("volume", "contents", "net", "wt", "weight", "vol"),
    "contains": ("volume", "contents", "net", "wt", "weight", "vol"),
    "destination": ("to", "arrival", "arrive", "arrives", "towards", "for"),
    "origin": ("from", "departure", "departs", "depart"),
    "depart": ("from", "departure", "departs", "origin"),
    "departure": ("from", "depart", "departs", "origin"),
    "leave": ("from", "departure", "departs"),
    "leaves": ("from", "departure", "departs"),
    "going": ("to", "destination"),
    "start": ("from", "departure", "departs", "origin"),
    "starts": ("from", "departure", "departs", "origin"),
    "begin": ("from", "departure", "origin"),
    "begins": ("from", "departure", "origin"),
    "pay": ("due", "payable", "total", "amount", "balance"),
    "owe": ("due", "payable", "balance", "total"),
    "surname": ("name", "last", "family"),
    "forename": ("name", "first", "given"),
    "applicant": ("name",),
    "customer": ("name", "account", "client"),
    "venue": ("at", "location", "place"),
    "check-in": ("arrival", "arrive", "arriving", "from"),
    "check-out": ("departure", "depart", "departing", "leaving", "until"),
    "arrive": ("to", "arrival", "destination", "delivery", "delivered", "eta", "expected"),
    "arrival": ("to", "arrive", "destination", "delivery", "delivered", "eta", "expected"),
    "dispatch": ("dispatched", "despatch", "shipped", "sent", "collected", "posted"),
    "dispatched": ("dispatch", "despatch", "shipped", "sent", "collected", "posted"),
    "shipped": ("dispatch", "dispatched", "despatch", "sent", "collected", "posted"),
    "resolution": ("resolved", "closed", "fixed"),
    "reported": ("logged", "raised", "opened", "report", "filed"),
    "applied": ("application", "submitted"),
    "deposit": ("advance", "prepaid", "down", "upfront"),
    "hour": ("hourly", "hr", "per"),
    "represents": ("representative", "represented", "counsel", "solicitor", "attorney", "lawyer", "agent"),
    "owed": ("due", "payable", "balance", "fees", "fee", "total"),
    "trip": ("outbound", "departure", "travel", "journey"),
    "final": ("total", "grand", "due", "balance", "payable"),
    "subtotal": ("sub-total", "net", "excl", "goods", "gross"),
    "off": ("discount", "reduction", "saving", "savings", "promo"),
    "repayment": ("instalment", "installment", "payment", "monthly"),
    "paid": ("pay", "payable", "due", "amount"),
}

# --------------------------------------------------------------------------------------- candidate spans
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("website", re.compile(r"(?<![@\w.-])(?:https?://)?(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*\."
                           r"(?:com|org|net|io|co|uk|de|"
                           r"fr|eu|info|biz|edu|gov)(?:/\S*)?\b", re.IGNORECASE)),
    ("date", re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b|"
                        rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}\s*,?\s+\d{{2,4}}\b|"
                        rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\s*,?\s+\d{{4}}\b|\b{_MONTH}\s+\d{{4}}\b",
                        re.IGNORECASE)),
    ("time", re.compile(r"\b\d{1,2}:[0-5]\d(?:\s?[ap]\.?m\.?)?(?![\d.:])|\b\d{1,2}\.[0-5]\d\s?[ap]\.?m\b\.?|"
                        r"\b\d{1,2}\s?[ap]\.?m\b\.?", re.IGNORECASE)),
    ("phone", re.compile(r"(?<![\w.])\+?\(?\d{2,4}\)?(?:[\s.-]?\d{2,4}){2,4}(?![\w.])")),
    ("money", re.compile(r"-?[$€£]\s?\d[\d,]*(?:\.\d{1,2})?|(?<![\w.:/])-\d+\.\d{2}(?![\w.])|(?<![\w.:/-])\d{1,3}(?:,\d{3})*\.\d{2}(?![\w.])|"
                         r"(?<![\w.:/-])\d+\.\d{2}(?![\w.])|(?<![\w.])\d+,\d{2}(?![\w,])")),
    ("code", re.compile(r"(?<![\w-])(?=[A-Za-z0-9#/-]*\d)(?=[A-Za-z0-9#/-]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9#/-]*"
                        r"[A-Za-z0-9](?![\w-])|(?<![\w-])\d{2,}(?:-\d+)+(?![\w-])|(?<![\w.])#\s?\d+|"
                        # a code printed in groups: "8840 6385", "KX 046842 73724", "XW85 GNCM 9444 2059 2148"
                        r"(?<![\w-])(?=(?:[A-Z0-9 ]*\d){6})[A-Z0-9]{2,6}(?: [A-Z0-9]{2,6}){1,5}(?![\w-])|"
                        # a carrier's or a line's code before a number: flight "PV 389", train "IC 2214"
                        r"(?<![\w-])[A-Z]{2} \d{1,4}[A-Z]?(?![\w-])")),
    ("quantity", re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?\s?(?:kg|g|mg|mcg|µg|ml|l|cl|dl|oz|fl oz|lb|lbs|cm|mm|m|km|"
                            r"in|ft|%|pcs|pieces|tablets|capsules|caps|tabs|sheets|rolls|servings)(?![\w])",
                            re.IGNORECASE)),
    ("address", re.compile(r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][A-Za-z'’-]+\s+){0,3}(?:Street|St|Road|Rd|Lane|Ln|"
                           r"Avenue|Ave|Way|Drive|Dr|Close|Crescent|Place|Pl|Square|Sq|Walk|View|Court|Ct|Terrace|"
                           r"Hill|Row|Gardens|Parade|Boulevard|Blvd|Quay|Wharf|Mews|Grove|Green|Rise|Highway|Hwy)"
                           r"\b\.?")),
    ("number", re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)?(?![\w]|[.,]\d)")),
    ("name", re.compile(r"\b[A-Z][A-Za-z'’.-]*\.?(?:[ ]+(?:[A-Z][A-Za-z'’.-]*|de|van|von|da|di|le|la|du|of|the|and|&))"
                        r"{0,4}[ ]+[A-Z][A-Za-z'’-]+\b|\b[A-Z][A-Za-z]{2,}\b")),
]
#: a small preference among equally labelled spans: the most specific kind of span first
_KIND_PRIOR = {"name": 0.3, "cell": 0.15, "line": 0.0, "quantity": 0.5}
#: per question type: a count is a whole number first, a decimal ("113.6 hectares") second
_TYPE_PRIOR = {"count": {"number": -0.3, "quantity": -0.3}}
#: a phone number written as one ("(976) 372-8862", "+44 438 561 3753") over a bare digit run (a meter number)
_PHONE_SHAPE = re.compile(r"^\+|^\(\d+\)|\d[\s.-]\d")
_ISSUER_PRIOR = (1.0, 0.5)
#: words beside a value that do not label it
_UNITS = set("eur usd gbp chf jpy cad aud sek nok dkk pln czk inr cny rmb kr eu us uk each ea per pcs pc x incl "
             "excl net gross kg g mg ml l cl oz lb lbs".split())
_RANGE = re.compile(r"\s*(?:-|–|—|to|until|till)\s*")
_END_WORDS = re.compile(r"\b(close|closes|closing|closed|end|ends|ending|finish|finishes|until|till|last|latest|"
                        r"arrive|arrives|arrival|return|returns|check-?out|expire|expires|expiry)\b")
_START_WORDS = re.compile(r"\b(open|opens|opening|start|starts|starting|begin|begins|from|first|earliest|depart|"
                          r"departs|departure|leave|leaves|check-?in|issued|valid from)\b")
_PATTERNS_BY_KIND = dict(_PATTERNS)
#: label words that mark the start / the end of a period or an account ("Opening balance", "Valid until")
_START_LABEL = set("open opens opening start starts starting begin begins beginning from previous initial "
                   "commencement commences effective".split())
#: labels of the document's own date, and questions that ask for it
_DOCUMENT_DATE_LABEL = re.compile(r"(dated|issued|issue date|date issued|date of issue|issued on|"
                                  r"document date|statement date|date printed)\W*")
_ASKS_DOCUMENT_DATE = re.compile(r"\b(issued?|dated|date on|the date\W*$|what is the date|written|printed|made|"
                                 r"purchase|purchased|bought|sent|signed|created|prepared|"
                                 r"when (was|is) (this|it|the (document|letter|receipt|form|note|notice|record)))\b")
#: questions after the start / the end of a period or an account (narrower than _START_WORDS: "When was it
#: issued?" or "What time do doors open?" ask for no start)
_Q_START = re.compile(r"\b(start|starts|starting|begin|begins|beginning|initial|initially|opening balance|"
                      r"from (what|which|when))\b|\bfrom\W*$")
_Q_END = re.compile(r"\b(end|ends|ending|until|till|finish|finishes|final|closing balance|expire|expires|expiry)\b")
_END_LABEL = set("close closes closing end ends ending until till expiry expires final finish finishes last".split())
_OCR_DOUBLE_POINT = re.compile(r"(?<=\d)\. ?\.(?=\d{2}\b)")  # "3. .52": a leader dot read into the number
_OCR_DECIMAL = re.compile(r"(?<=\d) \.(?=\d{2}\b)|(?<=\d)\. (?=\d{2}\b)")  # "15 .02", "7. 47": a space beside the point
_OCR_HYPHEN = re.compile(r"(?<=\d)-[ ](?=\d)")  # "4798- 2537-24": OCR split a code after its hyphen
_CELL_SPLIT = re.compile(r"\s+\|\s+|\s{2,}|\t")
_LABEL_SPLIT = re.compile(r"\s*[:=]\s+|\s*:\s*$")
_WORD = re.compile(r"[a-z0-9#]+(?:['’-][a-z0-9]+)*")
_MAX_LINE_CHARS = 60


@dataclass
class Candidate:
    """A span of the expert text that could be the answer."""

    text: str
    kind: str
    line: int
    """Index of the text line it comes from."""
    label: str
    """The words that label it: the rest of its row, else the line above."""
    weak: bool = False
    """The label was found only after the span or elsewhere in its row (it counts half)."""
    column: bool = False
    """The label is the header of its column (the row above is a row of bare labels)."""
    in_label: bool = False
    """The span is itself a field name: the label part of its cell ("Date" of "Date issued: 3 Sep 2023") or a
    heading styled as a label ("GUEST NAME" above a name)."""
    label_score: float = 0.0
    lm_score: float | None = None
    score: float = 0.0


@dataclass
class Extraction:
    """The result of :func:`extract_answer`: ``answer`` (``None`` when nothing fits) and the evidence."""

    answer: str | None
    answer_type: str | None
    candidates: list[Candidate] = field(default_factory=list)
    reason: str = ""

    def to_dict(self, top: int = 5) -> dict[str, Any]:
        return {"answer": self.answer, "answer_type": self.answer_type, "reason": self.reason,
                "candidates": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(c).items()}
                               for c in self.candidates[:top]]}


def answer_type(question: str) -> str | None:
    """The kind of answer a question asks for (``"money"``, ``"date"``, ``"name"``, ...), or ``None`` when open
    ("What does the sign say?", "Describe the picture")."""
    q = " ".join(question.lower().split())
    if re.search(r"\b(describe|explain|summari[sz]e|why|purpose|used for|what does .* (say|mean|show)|"
                 r"what is (shown|happening)|"
                 r"what'?s (shown|happening)|what kind|what type|tell me about)\b", q):
        return None
    if re.match(r"(by |until |till |since )?when\b", q) and not re.search(r"\bwhat time\b", q):
        return "date"  # "By when must the bill be paid?" asks for a date, not the amount
    lead = re.match(r"(who|whom|whose|where)\b|(which|what) (building|place|venue|shop|store|restaurant|company|brand|"
                    r"business|firm|hotel|museum|station|airport|gym|school|library|hospital|clinic|club|park|"
                    r"city|town|country|street|publisher|organi[sz]ation|person|team)\b", q)
    if lead and not re.search(_QUESTION_TYPES[0][1] + "|" + _QUESTION_TYPES[1][1] + "|" + _QUESTION_TYPES[2][1], q):
        # the question word says it first ("Where does the flight depart from?" asks for a place, not a code;
        # "Which building has these hours?" for a name, not a time)
        return "name"
    if _JOB_QUESTION.search(q) and not re.search(r"\b(number|no|code|id|date|when)\b", q):
        return "name"  # "What is her job title?", "What position does Chiara Carvalho hold?": a job title
    if re.match(r"(which|what) [a-z]+(?: [a-z]+)? (issued|sent|published|produced|prepared|signed|wrote|made) "
                r"(this|these|it|the)\b", q):
        return "name"  # "Which carrier issued this document?" asks who, not when
    if re.search(r"\b(date|dated)\b", q) and not re.search(r"\b(what time|e-?mail|phone)\b", q):
        return "date"  # "What is the pay date?" asks for a date, not the pay
    if re.search(r"\b(name|named|surname|forename)\b", q) and not re.search(
            r"\b(number|no|num|code|id|e-?mail|phone|website|date|time)\b", q):
        return "name"  # "What is the member's name?" asks for the name, not the member number
    for kind, pattern in _QUESTION_TYPES:
        if re.search(pattern, q):
            return kind
    if re.match(r"(what|which)\b", q):
        return "field"  # "What is the VIN?", "Which seal is on the container?": a printed field, if one is labelled so
    return None


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


#: "before tax", "excluding VAT", "before any adjustment": the words after these name what is left out
_EXCLUDING = re.compile(r"\b(before|excluding|excl|without|not including|less)\s+(any\s+|the\s+)?([a-z-]+)")


def _excluded(question: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(3)) for m in _EXCLUDING.finditer(question.lower())]


def _content_words(question: str) -> list[str]:
    q = question.lower()
    left_out = [m.group(3) for m in _EXCLUDING.finditer(q)]
    words = [re.sub(r"['’]s$", "", w) for w in _words(q)]  # "the member's name": member
    if left_out:  # "How much do the items come to before tax?" asks for the subtotal, not the tax
        words = [w for w in words if w not in left_out and w not in ("before", "excluding", "excl", "without")]
        words.append("subtotal")
    kept = [w for w in words if w not in _STOP and len(w) > 1]
    if words and words[-1] in ("to", "from"):  # "Which city is the ticket to?", "Where does it start from?"
        kept.append(words[-1])
    return kept


_SUFFIXES = ("ings", "ing", "ers", "ors", "er", "or", "es", "ed", "s", "d", "e")


def _stem(word: str) -> str:
    """A crude English stem that joins a verb and its agent noun: supervises/supervisor, owns/owner,
    presides/presiding, approved/approver, organises/organiser (never shorter than four letters)."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[:-len(suffix)]
    return word


def _same_word(a: str, b: str) -> bool:
    """Equal, a plural/verb form or agent noun of each other, or (words of 5+ letters) one OCR slip apart."""
    if a == b:
        return True
    if min(len(a), len(b)) >= 4 and _stem(a) == _stem(b) and len(_stem(a)) >= 4:
        return True
    if len(a) >= 3 and len(b) >= 3 and (a.rstrip("s") == b.rstrip("s") or a.rstrip("es") == b.rstrip("es")):
        return True
    if min(len(a), len(b)) >= 5 and a[0] == b[0]:
        return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8
    return False


#: weight of the noun after which/what among a question's content words (others weigh 1)
_HEAD_WEIGHT = 1.5
#: "What percentage of moisture ...", "What kind of zone ...": the word after what/which names a measure or a
#: category of the field, not the field
_MEASURE_WORDS = set("kind kinds type types sort sorts percentage percent proportion share amount fraction".split())


def label_match(question: str, label: str) -> float:
    """How well a candidate's label answers to the question's content words, 0..1.

    The weighted share of the question's content words found in the label (field words weigh 1, words that name
    the answer's kind — *number*, *date*, *name*, ... — 0.5), less a little for each label word the question does
    not mention, so the most specific label wins.
    """
    qwords = _content_words(question)
    lwords = [w for w in _words(label) if w not in _STOP or w in ("by", "from", "to", "no", "on")]
    if not qwords or not lwords:
        return 0.0
    total = matched = 0.0
    fields = False  # a word that names the field, not only the answer's kind, was matched
    used: set[int] = set()
    # "Which court or lane is booked?": either of two alternatives is the whole field
    either = {m.group(2): m.group(1) for m in re.finditer(r"\b([a-z]+) or ([a-z]+)\b", question.lower())}
    # "Who supervises the employee?": the verb names the field (Supervisor), its object less so (Employee)
    verb = re.match(r"\s*who (\w+) (?:the|a|an|this|that|his|her|their|its) (\w+)", question.lower())
    objects = {verb.group(2)} if verb and verb.group(1) not in _STOP else set()
    # "Which gate does the flight leave from?": the noun after which/what names the field (Gate), the rest of the
    # question only describes it (Flight is another field)
    head = re.match(r"\s*(?:which|what)\s+([a-z]+)\b(?!\s+(?:is|are|was|were|does|do|did)\s+(?:the|a|an)\s+\w+\W*$)",
                    question.lower())
    head_word = (head.group(1) if head and head.group(1) not in _STOP | _TYPE_WORDS | _MEASURE_WORDS else None)
    for q in dict.fromkeys(qwords):
        if q in either and either[q] in qwords:
            continue  # counted with its alternative
        forms = (q, *_SYNONYMS.get(q, ()))
        alternative = next((a for a, b in either.items() if b == q), None)
        if alternative:
            forms = (*forms, alternative, *_SYNONYMS.get(alternative, ()))
        weight = 0.5 if q in _TYPE_WORDS or q in objects else _HEAD_WEIGHT if q == head_word else 1.0
        total += weight
        hits = [j for j, lw in enumerate(lwords) if any(_same_word(f, lw) for f in forms)]
        if hits:
            matched += weight
            used.update(hits)
            fields = fields or q not in _TYPE_WORDS
    label_text = " ".join(lwords)
    for prep, word in _excluded(question):  # "Total before tax" answers "What is the total before tax?" exactly
        total += 1.0
        if f"{prep} {word}" in label_text or (prep in ("excluding", "excl") and f"excl {word}" in label_text):
            matched += 1.0
            fields = True
            used.update(j for j, w in enumerate(lwords) if w in (prep, word, "excl"))
    if matched == 0.0:
        return 0.0
    extra = sum(1 for j, w in enumerate(lwords) if j not in used and not w.isdigit() and w not in _NUMBERING)
    score = max(0.0, matched / total - 0.05 * extra)
    # "From what date does it apply?" matches "Issue date" by "date" alone: the kind of answer, not the field
    return score if fields else 0.3 * score


def _only_question_words(question: str, span: str) -> bool:
    """"Total" for "What is the total?": every word of the span is a word of the question (or its synonym) — the
    field's name, not its value ("Falcon Publishing" for "Who published this book?" is a value)."""
    qwords = _content_words(question)
    words = [w for w in _words(span) if w not in _STOP]
    return bool(words) and all(any(_same_word(f, w) for q in qwords for f in (q, *_SYNONYMS.get(q, ())))
                               for w in words)


#: small letters that look like their capitals (OCR often gets their case wrong)
_SAME_SHAPE = set("cosvwxz")


def _is_heading(cell: str) -> bool:
    """A column header: a few capitalised words, no digits ("MEMBER ID", "DATE OF BIRTH"). Lower-case cells are
    more often values of their own row ("From | Cork | To | Nantes") than headers."""
    letters = [ch for ch in cell if ch.isalpha()]
    # OCR reads capitals whose small letter has the same shape ("TO" -> "To") either way
    return (not any(ch.isdigit() for ch in cell) and 1 <= len(cell.split()) <= 4 and bool(letters)
            and any(ch.isupper() for ch in letters) and all(ch.isupper() or ch in _SAME_SHAPE for ch in letters))


def _meaningful(text: str) -> bool:
    return any(w not in _UNITS for w in _words(text))


def _label_of(cells: Sequence[str], index: int, left: str, right: str, prev: str) -> tuple[str, bool]:
    """``(label, weak)`` of a span in ``cells[index]`` between ``left`` and ``right``: the words before it in its
    cell ("Flight to Galway"), else the cell before it ("From | Cork | To | Nantes": Nantes is labelled "To",
    not "From"), else — when the span is all its line says — the bare heading above (``prev``); words only after
    it, or elsewhere in the row, label it weakly."""
    left = left.strip(" :|-")
    if _meaningful(left):
        return left, False
    if index > 0 and _meaningful(cells[index - 1]) and not _is_value(cells[index - 1]):
        return cells[index - 1], False
    right = right.strip(" :|-")
    rest = " ".join(c for k, c in enumerate(cells) if k != index)
    if prev and not _meaningful(right) and not _meaningful(rest):  # the span is its line: the heading above
        return prev, False
    if _meaningful(right):
        return right, True
    return rest, True


def _clean_cell(text: str) -> str:
    text = text.strip(" \t|")
    sign = "-" if re.match(r"-\s?[$€£]?\d", text) else ""  # a negative amount keeps its sign
    cleaned = text.strip(" \t|:;,.-–—")
    return sign + cleaned if cleaned else text


def _postcode_after_place(cell: str, m: re.Match[str]) -> bool:
    """"Valencia 72522", "Boise 20861": a number right after a capitalised place word ends an address line."""
    return bool(re.search(r"\b[A-Z][a-z]{2,}\s+$", cell[:m.start()])) and m.group(0).isdigit() \
        and 4 <= len(m.group(0)) <= 5 and not cell[m.end():].strip()


def _is_value(cell: str) -> bool:
    """A whole cell that is a value, not a label: "65 Church Street", "office@dublin.co.uk", "12.50"."""
    cell = cell.strip()
    return any(_PATTERNS_BY_KIND[kind].fullmatch(cell) for kind in ("address", "email", "website", "phone", "date",
                                                                      "money", "time", "quantity"))


def _all_caps(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    return len(letters) >= 2 and all(ch.isupper() for ch in letters)


def _typed_value(cell: str) -> bool:
    """The cell starts with a value that is not words: a date, an amount, a code, a number..."""
    return any(m.start() == 0 for kind in ("date", "time", "money", "code", "email", "phone", "website", "number")
               for m in _PATTERNS_BY_KIND[kind].finditer(cell))


def candidates(text: str) -> list[Candidate]:
    """Every span of ``text`` that could answer a factual question, with its label — one candidate per
    occurrence (a value printed twice, "New charges 91.61" and "AMOUNT DUE 91.61", has both labels)."""
    lines = [line.strip() for line in text.splitlines()]
    out: list[Candidate] = []
    prev = ""
    prev_line = -1
    headed: dict[int, int] = {}  # line -> the bare heading line above that labels it
    header: list[str] = []
    for i, line in enumerate(lines):
        if not line:
            continue
        raw = [c for c in _CELL_SPLIT.split(line) if _clean_cell(c)]
        cells = [_clean_cell(c) for c in raw]
        # a cell that labels the next one: "Date issued: | September 3, 2023", "Ref | XDM/2635/41"
        label_cells = {k for k in range(len(cells) - 1)
                       if not any(ch.isdigit() for ch in cells[k])
                       and (raw[k].rstrip().endswith(":") or _typed_value(cells[k + 1]))}
        # a row of bare labels ("NAME | PHONE") heads the row below it column by column
        columns = header if len(header) == len(cells) > 1 else None
        header = cells if len(cells) > 1 and all(_is_heading(c) for c in cells) else []
        for cell_index, cell in enumerate(cells):
            # characters already read as a date, a time or an e-mail: "2023" of "January 1, 2023" is no number or
            # code of its own (phone-like digit groups stay: account and ID numbers look the same)
            taken = [m.span() for kind in ("date", "time", "email", "address")
                     for m in _PATTERNS_BY_KIND[kind].finditer(cell)]
            # a phone number that says so ("(386) 962-6386", "+44 400 383 5038") is no code either
            taken += [m.span() for m in _PATTERNS_BY_KIND["phone"].finditer(cell) if re.match(r"\s*[+(]", m.group(0))]
            # the label part of the cell: all of a label cell, or the key of "Tracking number: ZT-22812508" (words
            # before a number are not always a label: "Director (361) 973-4024")
            head = _LABEL_SPLIT.split(cell, maxsplit=1)
            keyed_cell = len(head) == 2 and bool(head[1])
            label_end = len(cell) if cell_index in label_cells else len(head[0]) if keyed_cell else 0
            for kind, pattern in _PATTERNS:
                for m in pattern.finditer(cell):
                    span = m.group(0).strip()
                    if kind in ("number", "code", "name") and any(a <= m.start() and m.end() <= b for a, b in taken):
                        continue
                    if kind in ("number", "code") and _postcode_after_place(cell, m):
                        continue
                    if kind == "name" and (span.isdigit() or len(span) < 2
                                           or all(w.lower() in _FUNCTION_WORDS for w in span.split())):
                        continue
                    if kind == "phone" and (sum(ch.isdigit() for ch in span) < 7
                                            or _PATTERNS_BY_KIND["date"].fullmatch(span)):
                        continue
                    column = columns is not None and not _meaningful(cell[:m.start()].strip(" :|-"))
                    if column:
                        label, weak = columns[cell_index], False  # type: ignore[index]
                    else:
                        label, weak = _label_of(cells, cell_index, cell[:m.start()], cell[m.end():], prev)
                    if kind == "number":
                        kind_ = "integer" if span.isdigit() else "number"
                    else:
                        kind_ = kind
                    out.append(Candidate(span, kind_, i, label, weak=weak, column=column,
                                         in_label=kind == "name" and m.end() <= label_end))
            if len(cells) > 1 and len(cell) <= _MAX_LINE_CHARS and _meaningful(cell):
                if keyed_cell:
                    out.append(Candidate(head[1], "cell", i, head[0]))
                else:
                    label, weak = ((columns[cell_index], False) if columns is not None
                                   else _label_of(cells, cell_index, "", "", prev))
                    out.append(Candidate(cell, "cell", i, label, weak=weak, column=columns is not None))
        flat = line.replace(" | ", " ")
        head = _LABEL_SPLIT.split(flat, maxsplit=1)
        keyed = len(cells) > 1 or (len(head) == 2 and bool(head[1]))
        if len(line) <= _MAX_LINE_CHARS:
            if len(head) == 2 and head[1]:  # "Name: Alice Moreau": the value is the answer, its label the key
                out.append(Candidate(head[1], "cell", i, head[0]))
            else:
                out.append(Candidate(flat, "line", i, prev))
        if prev:
            headed[i] = prev_line
        # a line labels the one below only when it is a bare heading ("TOTAL", "SPEED LIMIT", "Ship to:"),
        # not a "label value" row of its own
        prev = flat.rstrip(": ") if not keyed and len(flat.split()) <= 5 else ""
        prev_line = i
    # a heading styled as a label ("GUEST NAME" above "Ivan Gunnarsson", "Ship to:") names a field, it is no value
    # itself — below the document's first two lines (its title and issuer)
    first_lines = [k for k, line in enumerate(lines) if line][:2]
    for value_line, head_line in headed.items():
        head, value = lines[head_line], lines[value_line]
        if head_line in first_lines or len(head.split()) > 3:
            continue
        if head.rstrip().endswith(":") or (_all_caps(head) and not _all_caps(value)):
            for c in out:
                if c.line == head_line and c.kind in ("name", "line", "cell"):
                    c.in_label = True
    return out


def _range_ends(question: str, text: str) -> dict[str, float]:
    """For "When does it close?" on "Open 10:00 - 22:30": a bonus for the end of a printed range (the start for
    "When does it open?"). ``{span: bonus}``; empty when the question names neither end."""
    q = question.lower()
    end, start = bool(_END_WORDS.search(q)), bool(_START_WORDS.search(q))
    if end == start:
        return {}
    bonus: dict[str, float] = {}
    for kind in ("time", "date"):
        pattern = _PATTERNS_BY_KIND[kind].pattern
        for m in re.finditer(rf"({pattern})(?:{_RANGE.pattern})({pattern})", text, re.IGNORECASE):
            first, second = m.group(1).strip(), m.group(2).strip()  # the patterns have no groups of their own
            bonus[second if end else first] = 2.0
    return bonus


def _mostly_letters(text: str) -> bool:
    letters = sum(ch.isalpha() for ch in text)
    digits = sum(ch.isdigit() for ch in text)
    return letters >= 2 and digits <= 0.3 * (letters + digits)


Scorer = Callable[[Sequence[str]], Sequence[float]]
#: the lowest mean log-probability the model's term counts (an average token probability of 2e-9; none of 503
#: candidates of 72 dev questions came below -15): it bounds what the model can change, so clear cases skip it
LM_FLOOR = -20.0
"""``scorer(spans) -> mean log-probability of each span as the answer`` (higher is better)."""


def extract_answer(question: str, text: str, scorer: Scorer | None = None, *, require_type: bool = False,
                   max_scored: int = 24, label_weight: float = 4.0, shape_weight: float = 1.0,
                   lm_weight: float = 0.15, min_label: float | None = None) -> Extraction:
    """The span of ``text`` (expert output, one line per printed line) that best answers ``question``.

    ``scorer`` (see :data:`Scorer`) adds the language model's belief; without one, label evidence and position
    decide. ``require_type``: open questions (no answer type) give ``answer=None`` instead of the best line — what
    ``auto`` mode uses to fall back to generation. At most ``max_scored`` candidates (best label evidence first)
    are scored by the model. ``min_label``: answer only with a span whose label evidence reaches it (else
    ``answer=None``); with ``require_type``, "field" questions ("What is the VIN?") always need
    ``_FIELD_MIN_LABEL``.
    """
    text = _OCR_DECIMAL.sub(".", _OCR_DOUBLE_POINT.sub(".", _OCR_HYPHEN.sub("-", text)))
    qtype = answer_type(question)
    if qtype is None and require_type:
        return Extraction(None, None, reason="open question: no answer type")
    pool = every = candidates(text)
    if qtype is not None:
        kinds = _TYPE_KINDS[qtype]
        typed = [c for c in pool if c.kind in kinds]
        if not typed:
            return Extraction(None, qtype, reason=f"no {qtype} in the text")
        if qtype == "name":  # a name is words, not a date or an amount in a cell
            typed = [c for c in typed if c.kind in ("name", "address") or _mostly_letters(c.text)]
        if qtype == "quantity":  # an amount of something has digits ("24.4 kg"), not a word cell ("Rocco")
            typed = [c for c in typed if any(ch.isdigit() for ch in c.text)]
        if not typed:
            return Extraction(None, qtype, reason=f"no {qtype} in the text")
        pool = typed
    if not pool:
        return Extraction(None, qtype, reason="no text to extract from")
    labels = {c.label.lower() for c in every if c.column}
    role = _name_role(question) if qtype == "name" else None
    q = question.lower()
    wants = (("end" if _Q_END.search(q) else "") + ("start" if _Q_START.search(q) else "")
             if qtype in ("date", "time", "money", "quantity", "count") else "")
    # "How much was in the account at the start?": "Opening balance", not "Closing balance"
    same, other = ((_START_LABEL, _END_LABEL) if wants == "start" else (_END_LABEL, _START_LABEL) if wants == "end"
                   else (set(), set()))
    lines = text.splitlines()
    keys = _row_keys(question)
    titles = {line.strip().replace(" | ", " ").lower() for line in [x for x in lines if x.strip()][:2]}
    # a date question about an event ("When is the booster due?", "What is the move-in date?") is not answered by
    # the document's own date ("Dated", "Issue date") unless it asks for that date
    event_date = qtype == "date" and not _ASKS_DOCUMENT_DATE.search(q)
    # a bare "Date" is the document's date only beside other dates (on a ticket it is the event's)
    several_dates = len({c.text for c in pool if c.kind == "date"}) > 1
    for c in pool:
        c.label_score = label_match(question, c.label) * (0.5 if c.weak else 1.0)
        label = c.label.strip().lower()
        if event_date and (_DOCUMENT_DATE_LABEL.fullmatch(label) or (several_dates and label == "date")):
            c.label_score -= 0.3
        if c.label.lower() in titles and _is_document_title(_words(c.label)):
            c.label_score = 0.0  # "Membership Renewal" heads the document, it labels no field
        if keys and c.line < len(lines):
            row = lines[c.line].lower()
            if all(k in row for k in keys) and not any(k in c.text.lower() for k in keys):
                c.label_score += 0.5  # "What position does Chiara Carvalho hold?": her row of the table
        words = set(_words(c.label))
        c.label_score += 0.5 * bool(words & same) - 0.5 * bool(words & other)
        if role is not None and _label_role(c.label) not in (None, role):
            c.label_score -= 0.5  # "PASSENGER Liam Whitfield" is no answer to "Where does the journey start?"
        if (c.kind in ("name", "cell", "line") and c.text.lower() in labels) or c.in_label:
            c.label_score -= 1.0  # it heads a column ("PHONE" above a number): a field name, not a value
        # a span that repeats the question's own words ("Total" for "What is the total?") is its label, not the
        # answer; kinds that carry their own meaning (amounts, dates, codes) are exempt
        if c.kind in ("name", "cell", "line") and _only_question_words(question, c.text):
            c.label_score -= 1.0
    best: dict[str, Candidate] = {}  # one candidate per span text: its best-labelled occurrence
    for c in sorted(pool, key=lambda c: (-c.label_score, c.line)):
        best.setdefault(c.text, c)
    pool = list(best.values())
    scored = pool[:max_scored]
    ends = _range_ends(question, text) if qtype in ("time", "date") else {}
    issuer = qtype == "name" and (bool(_ISSUER.search(question.lower())) or role == "title")
    first_line = min((c.line for c in pool), default=0)
    for c in scored:
        prior = (_KIND_PRIOR.get(c.kind, 0.0) + _TYPE_PRIOR.get(qtype or "", {}).get(c.kind, 0.0) - 0.01 * c.line
                 + ends.get(c.text, 0.0) + shape_weight * _shape(role, c.text))
        if qtype == "phone" and not _PHONE_SHAPE.search(c.text):
            prior -= 1.5  # "Meter no. 88433187" is labelled a number but written as no phone number
        if issuer and c.line - first_line < 2:
            prior += _ISSUER_PRIOR[c.line - first_line]
        if qtype == "name" and c.kind in ("name", "cell", "line") and _is_document_title(_words(c.text)):
            prior -= 1.0  # the document's own title ("Consignment Note") names no one
        c.score = label_weight * c.label_score + prior
    # The model's term, lm_weight x max(mean log-probability, LM_FLOOR), lies in [lm_weight x LM_FLOOR, 0]: when the
    # evidence alone puts the best span more than that ahead of every other, no belief of the model can change the
    # answer, and its forward (most of an extraction's time) is skipped.
    ranked = sorted(c.score for c in scored)
    decided = len(ranked) < 2 or ranked[-1] - ranked[-2] > lm_weight * -LM_FLOOR
    if scorer is not None and not decided:
        lm = list(scorer([c.text for c in scored]))
        for c, s in zip(scored, lm):
            c.lm_score = float(s)  # the model's mean log-probability of the span
            c.score += lm_weight * max(c.lm_score, LM_FLOOR)
    scored.sort(key=lambda c: -c.score)
    best = scored[0]
    needed = max(min_label or 0.0, _FIELD_MIN_LABEL if qtype == "field" and require_type else 0.0)
    if needed and best.label_score < needed:
        return Extraction(None, qtype, scored, reason=f"no printed label answers it (best {best.label!r}, "
                                                      f"{best.label_score:.2f})")
    reason = (f"{qtype or 'open'} question; best label {best.label!r} ({best.label_score:.2f})"
              + (f", model {best.lm_score:.2f}" if best.lm_score is not None
                 else ", the label evidence decides" if scorer is not None else ""))
    return Extraction(best.text, qtype, scored, reason)

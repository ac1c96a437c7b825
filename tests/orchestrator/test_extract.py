"""Extractive answering: question types, candidate spans with their labels, label evidence, and the pipeline's
``answer_mode`` switch (a random model cannot *generate* the printed answer; extraction must still find it)."""
from __future__ import annotations

import pytest

from orchestrator import VisualQAPipeline
from orchestrator.extract import answer_type, candidates, extract_answer, label_match

from .conftest import make_image, sleepy_expert

RECEIPT = """MAPLE CORNER MARKET
12 Harbour Street
2024-05-17 10:42
Coffee beans | 12.50
Oat milk | 3.25
Subtotal | 18.55
Tax (8%) | 1.48
Total incl. tax | 20.03"""


@pytest.mark.parametrize("question,kind", [
    ("What is the total on this receipt?", "money"), ("How much did the oat milk cost?", "money"),
    ("How many refills are left?", "count"), ("When is the invoice due?", "date"),
    ("What time does the train leave?", "time"), ("What is the tracking number?", "code"),
    ("Who is the sender?", "name"), ("Who wrote this book?", "name"), ("What is the e-mail address?", "email"),
    ("What does the sign say?", None), ("Describe the picture.", None), ("What is the capital of France?", "field"),
    ("What is the member's name?", "name"), ("What is the pay date?", "date"),
    ("Which carrier issued this document?", "name"), ("What is the VIN?", "field"),
])
def test_answer_type(question, kind):
    assert answer_type(question) == kind


def test_candidates_keep_the_label_of_their_row():
    by_text = {c.text: c for c in candidates(RECEIPT) if c.kind == "money"}
    assert by_text["3.25"].label == "Oat milk"
    assert by_text["1.48"].label.startswith("Tax")
    dates = [c.text for c in candidates(RECEIPT) if c.kind == "date"]
    assert dates == ["2024-05-17"]


def test_a_bare_heading_labels_the_line_below_but_a_keyed_row_does_not():
    cands = candidates("TOTAL\n18.55\nName: Alice Moreau\n1990-04-12")
    money = next(c for c in cands if c.text == "18.55" and c.kind == "money")
    assert money.label == "TOTAL"
    date = next(c for c in cands if c.kind == "date")
    assert date.label == ""  # "Name: Alice Moreau" is a row of its own, not the date's label


def test_label_match_prefers_the_specific_label():
    q = "How much was the tax?"
    assert label_match(q, "Tax (8%)") > label_match(q, "Total incl. tax") > label_match(q, "Oat milk") == 0.0
    assert label_match("Who is the sender?", "From") > 0  # a standard synonym
    assert label_match("What is the total?", "TOTA1") > 0  # one OCR slip is tolerated
    assert label_match("What is the total?", "Subtotal") == 0.0  # another word, not a slip


@pytest.mark.parametrize("question,answer", [
    ("How much did the oat milk cost?", "3.25"), ("How much was the tax?", "1.48"),
    ("What is the subtotal?", "18.55"), ("What is the date on the receipt?", "2024-05-17"),
    ("What time was the purchase?", "10:42"), ("What is the name of the shop?", "MAPLE CORNER MARKET"),
])
def test_extract_without_a_model_uses_the_labels(question, answer):
    assert extract_answer(question, RECEIPT).answer == answer


def test_model_scores_break_ties_between_equally_labelled_spans():
    text = "by Margaret Ellison\nby Thomas Hardy"
    def prefers_hardy(spans):
        return [0.0 if "Hardy" in s else -5.0 for s in spans]
    assert extract_answer("Who wrote this book?", text).answer == "Margaret Ellison"  # first line without a model
    assert extract_answer("Who wrote this book?", text, prefers_hardy).answer == "Thomas Hardy"


def test_open_questions_and_missing_types_are_left_to_generation():
    assert extract_answer("What does the sign say?", RECEIPT, require_type=True).answer is None
    assert extract_answer("What is the e-mail address?", RECEIPT).answer is None  # none printed


def ocr_stub(text):
    return sleepy_expert("ocr", 0.0, text)


@pytest.mark.parametrize("mode", ["extract", "auto"])
def test_pipeline_extracts_the_printed_answer(tiny_model, mode):
    p = VisualQAPipeline(tiny_model, experts=[ocr_stub(RECEIPT)], router="all", max_new_tokens=4)
    r = p.invoke({"image": make_image(0), "question": "How much was the tax?", "answer_mode": mode})
    assert r.answer == "1.48" and r.answer_mode == "extract"
    assert r.extraction["answer_type"] == "money" and r.extraction["candidates"][0]["text"] == "1.48"
    assert r.extraction["candidates"][0]["lm_score"] is not None  # the model scored the candidates
    assert r.usage["completion_tokens"] == 0


def test_pipeline_generate_mode_and_open_questions_generate(tiny_model):
    p = VisualQAPipeline(tiny_model, experts=[ocr_stub(RECEIPT)], router="all", max_new_tokens=4)
    r = p.invoke({"image": make_image(0), "question": "How much was the tax?", "answer_mode": "generate"})
    assert r.answer_mode == "generate" and "extraction" not in r
    r = p.invoke({"image": make_image(0), "question": "What does it say?"})  # auto, open question
    assert r.answer_mode == "generate" and "extraction" not in r


def test_counting_reads_a_printed_count_only_when_its_label_names_the_thing(tiny_model):
    """With the detector's answer at hand, a count printed under a label naming what is counted wins ("Pallets |
    20"); any other count is left to the model with both experts' text."""
    detector = sleepy_expert("detection", 0.0, "Detected objects: person x3")
    p = VisualQAPipeline(tiny_model, experts=[ocr_stub("DELIVERY NOTE\nPallets | 20\nBoxes | 116"), detector],
                         router="all", max_new_tokens=4)
    r = p.invoke({"image": make_image(0), "question": "How many pallets are in the shipment?"})
    assert r.answer == "20" and r.answer_mode == "extract"
    r = p.invoke({"image": make_image(0), "question": "How many people are there?"})
    assert r.answer_mode == "generate"


def test_pipeline_stream_extracts_too(tiny_model):
    p = VisualQAPipeline(tiny_model, experts=[ocr_stub(RECEIPT)], router="all", answer_mode="extract")
    chunks = list(p.stream({"image": make_image(0), "question": "What is the subtotal?"}))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total["answer"] == "18.55" and total["answer_mode"] == "extract"


def test_bad_answer_mode_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="answer_mode must be one of generate, extract, auto"):
        VisualQAPipeline(tiny_model, answer_mode="guess")
    p = VisualQAPipeline(tiny_model, experts=[ocr_stub(RECEIPT)], router="all")
    with pytest.raises(ValueError, match="answer_mode"):
        p.invoke({"image": make_image(0), "question": "x?", "answer_mode": 3})


BOOK = "Tobias Fischer\nTHE SILENT ARCHIVE\nThe bestselling debut\nBeacon House"
TICKET = "BOARDING PASS\nPassenger | LARSEN/BRUNO\nFrom | Cork | To | Nantes\nGate | J9 | Boarding | 15:20\nSeat | 29D"


@pytest.mark.parametrize("text,question,answer", [
    (BOOK, "Who is the author of this book?", "Tobias Fischer"),      # a person's name: two capitalised words
    (BOOK, "Which publisher is on the cover?", "Beacon House"),       # an organisation: 'House'
    (BOOK, "What is the title of the book?", "THE SILENT ARCHIVE"),   # a title is not a person's name
    (TICKET, "What is the destination?", "Nantes"),                   # labelled by the cell before it ('To')
    (TICKET, "Where does the flight depart from?", "Cork"),
    (TICKET, "What is the seat number?", "29D"),
    ("GATE D9\nFlight to Oslo\nDeparts 11:55", "What is the destination?", "Oslo"),
    ("Account number | 4798- 2537-24", "What is the account number?", "4798-2537-24"),  # OCR split the code
    ("REGISTRATION FORM\nNAME\nMaria Keller\nCITY\nTurin", "What is the applicant's surname?", "Maria Keller"),
])
def test_names_of_the_asked_kind_and_their_labels(text, question, answer):
    assert extract_answer(question, text).answer == answer


def test_a_label_after_the_span_counts_half():
    cands = {c.text: c for c in candidates("Departs 11:55\nFlight to Oslo") if c.kind == "name"}
    assert cands["Oslo"].label == "Flight to" and not cands["Oslo"].weak
    assert cands["Departs"].weak  # only '11:55' after it: not the heading of anything


def test_a_row_of_capitalised_labels_heads_the_row_below_column_by_column():
    form = "NAME | PHONE\nPeter Horvath | 347-927-3035\nDATE OF BIRTH | MEMBER ID\n1996-08-01 | 648968"
    assert extract_answer("What is the phone number?", form).answer == "347-927-3035"
    assert extract_answer("What is the member ID?", form).answer == "648968"
    assert extract_answer("Who is the applicant?", form).answer == "Peter Horvath"  # not the header 'PHONE'
    assert extract_answer("When was the applicant born?", form).answer == "1996-08-01"
    # a lower-case key/value row is not a header of the row below it
    ticket = "From | Cork | To | Nantes\nFlight | CR990 | Date | 6 Mar 2023"
    assert extract_answer("What is the destination?", ticket).answer == "Nantes"


def test_a_value_printed_twice_keeps_its_best_label():
    bill = "Previous balance\nPayment received | -111.17\nNew charges | 91.61\nAMOUNT DUE | 91.61 EUR"
    best = extract_answer("How much is due?", bill)
    assert best.answer == "91.61" and best.candidates[0].label == "AMOUNT DUE"
    assert extract_answer("How much was the payment received?", bill).answer == "-111.17"


@pytest.mark.parametrize("text,question,answer", [
    ("TRAIN TICKET\nFROM | TO\nGalway | Lyon\nPASSENGER\nFelix Delgado", "Where does the journey start?", "Galway"),
    ("TRAIN TICKET\nFROM | TO\nGalway | Lyon\nPASSENGER\nFelix Delgado", "Which city is the ticket to?", "Lyon"),
    ("SUMMIT\nBasmati Rice\nNet wt: 750g", "What is the brand?", "SUMMIT"),              # an all-caps first line
    ("SUMMIT\nApple Juice\nVolume: 800 ml\nPrice: £2.75", "How much does it contain?", "800 ml"),  # not the price
    ("THE LETTERS OF LYON\nSecond edition\nHannah Novak\nSilver Publishing", "Who published this book?",
     "Silver Publishing"),
    ("Hammer | 15 .02\nTOTAL | 20 .26", "What is the total?", "20.26"),                  # OCR spaced the point
    ("Hand cream | 3. .52\nTOTAL | 40.38 EUR", "How much was the hand cream?", "3.52"),   # a leader dot in it
    ("Due date | 23/08/2024\nAMOUNT DUE | £52.49", "By when must the bill be paid?", "23/08/2024"),
])
def test_dev_failures_of_fresh_seeds(text, question, answer):
    """Shapes of misses on dev-kind documents of seeds 40..43 (never test/holdout kinds)."""
    assert extract_answer(question, text).answer == answer


# ----------------------------------------------------------------- generic rules found on `record` documents
LETTER = """Consignment Note
Northwind Freight
210 Foundry Lane | accounts@northwind.org
www.northwind.co.uk
Issue date | 2024-01-14
Collected | 2024-01-06
Delivery due | 2024-01-16
Member name | D. Yilmaz
Member no. | 4471-20
Signed for by | Renata Holm
Opening balance | 1859.07
Closing balance | 2632.93
Seal no. | VJ947504
Pet age | 3 years
Valid from | 12/03/2024
Valid until | 04/09/2028"""


@pytest.mark.parametrize("question,answer", [
    ("Who received the goods?", "Renata Holm"),           # the title "Consignment Note" names no one
    ("Which organisation sent this?", "Northwind Freight"),  # nor does it name the issuer
    ("What is the member's name?", "D. Yilmaz"),           # a name question, not the member number
    ("Where are they located?", "210 Foundry Lane"),       # an address question is answered by an address
    ("Where can I find them online?", "www.northwind.co.uk"),  # not the domain of the e-mail address
    ("How much was in the account at the start?", "1859.07"),  # opening, not closing
    ("From what date does it apply?", "12/03/2024"),
    ("Until when is it valid?", "04/09/2028"),
    ("When should the goods arrive?", "2024-01-16"),       # arrive ~ delivery
    ("What is the pet's age?", "3 years"),                 # a possessive is its noun
    ("Which seal is on the container?", "VJ947504"),       # a field question with a label that says so
])
def test_generic_rules(question, answer):
    assert extract_answer(question, LETTER, require_type=True).answer == answer


def test_a_field_question_without_a_matching_label_is_left_to_the_model():
    result = extract_answer("What is the capital of France?", LETTER, require_type=True)
    assert result.answer is None and result.answer_type == "field"
    assert extract_answer("What colour is the van?", LETTER, require_type=True).answer is None


def test_digits_of_a_date_are_no_number_of_their_own():
    numbers = [c.text for c in candidates("Dated: January 1, 2023\nNights: 8") if c.kind in ("integer", "number")]
    assert numbers == ["8"]


STAFF = """Harbour Legal
Statement of Fees
Staff | Position | Direct line
Chiara Carvalho | Director (361) 973-4024
James Chowdhury | Officer 797-682-7430
Meter no. | 88433187
Items | 374.80
VAT (20%) | 74.96
Total | 449.76"""


@pytest.mark.parametrize("question,answer", [
    ("What position does Chiara Carvalho hold?", "Director"),     # a job title, looked up by her row
    ("How can James Chowdhury be called?", "797-682-7430"),       # a phone question, not a name
    ("What number can I call?", "(361) 973-4024"),                 # a phone written as one, not the meter number
    ("How much do the items come to before tax?", "374.80"),       # "before tax" leaves the tax out
    ("Who is this document from?", "Harbour Legal"),               # the issuer, not the first person named
    ("What is the final amount?", "449.76"),
])
def test_generic_rules_on_a_staff_table(question, answer):
    assert extract_answer(question, STAFF, require_type=True).answer == answer


def test_a_job_title_is_no_persons_name():
    text = "Northwind Design\nSales Manager\nAlice Moreau\nalice@northwind.com"
    assert extract_answer("Who is this card for?", text, require_type=True).answer == "Alice Moreau"
    assert extract_answer("What is her job title?", text, require_type=True).answer == "Sales Manager"


def test_given_names_come_from_a_lexicon_not_from_a_document_kind():
    from orchestrator.extract import given_names

    names = given_names()
    assert len(names) > 5000 and {"alice", "maria", "omar", "sofia"} <= names
    assert not {"northwind", "manager", "invoice", "total"} & names


def test_a_heading_styled_as_a_label_is_no_value_and_a_title_labels_no_field():
    text = "Membership Renewal\nSaffron Sports Club\nRef | MC-078110\nMEMBER NAME\nFelix Gallagher\nDATED\n4 June 2026"
    assert extract_answer("Whose membership is this?", text, require_type=True).answer == "Felix Gallagher"
    by_text = {c.text: c for c in candidates(text)}
    assert by_text["MEMBER NAME"].in_label and by_text["DATED"].in_label and not by_text["Felix Gallagher"].in_label


@pytest.mark.parametrize("question,text,answer", [
    ("What is the account number?", "Account number | 8840 6385\nRef | JL-2291", "8840 6385"),  # printed in groups
    ("What is the account number?", "ACCOUNT | 98-7411-8122", "98-7411-8122"),
    ("Which court or lane is booked?", "Member | Ivan Pham\nLane | 4\nLocker | 208", "4"),  # either word is the field
    ("What is the start time?", "Dated | 2025-10-19\nStart time | 21:50", "21:50"),  # a time, not a field
    ("What number identifies this document?", "Locker no | 293\nReference | 174-23779", "174-23779"),
    ("What rate of interest applies?", "Loan | 12000.00\nAPR | 8.75%", "8.75%"),
])
def test_more_generic_rules(question, text, answer):
    assert extract_answer(question, text, require_type=True).answer == answer


def test_an_event_date_is_not_the_documents_own_date():
    text = "Vaccination Record\nDated | 17/11/2024\nVaccinated | 03/09/2024\nBooster due | 17/09/2025"
    assert extract_answer("When should the pet come back?", text, require_type=True).answer != "17/11/2024"
    assert extract_answer("When was this issued?", text, require_type=True).answer == "17/11/2024"
    ticket = "THISTLE LIVE\nDate | 10/07/2024\nDoors | 19:40"  # a ticket's only date is its event's
    assert extract_answer("When is the concert?", ticket, require_type=True).answer == "10/07/2024"


@pytest.mark.parametrize("question,answer", [
    ("What is the total before tax?", "61.95"),      # the label says the excluded words too
    ("How much was taken off?", "-9.29"),
    ("How much is each repayment?", "907.23"),
    ("By when must the bill be paid?", "2024-10-16"),
])
def test_money_and_due_synonyms(question, answer):
    text = ("Statement\nIssue date | 2024-08-19\nTotal before tax | 61.95\nDiscount | -9.29\nTotal payable | 52.66\n"
            "Monthly instalment | 907.23\nDue date | 2024-10-16")
    assert extract_answer(question, text, require_type=True).answer == answer


@pytest.mark.parametrize("question,answer", [
    ("Who supervises the employee?", "Noor Esposito"),   # supervises ~ Supervisor
    ("Who presides?", "Hugo Lindqvist"),                # presides ~ Presiding judge
    ("Who approved it?", "Vera Walsh"),                 # approved ~ Approver
])
def test_a_verb_finds_its_agent_noun(question, answer):
    text = ("Leave Request\nQuayside Services\nEmployee | Tom Duarte\nSupervisor | Noor Esposito\n"
            "Presiding judge | Hugo Lindqvist\nApprover | Vera Walsh")
    assert extract_answer(question, text, require_type=True).answer == answer


def test_a_value_that_shares_a_word_with_the_question_is_still_a_value():
    text = "THE FORGOTTEN LETTERS\nClara Petrov\nFalcon Publishing"
    assert extract_answer("Who published this book?", text, require_type=True).answer == "Falcon Publishing"


def test_the_model_is_skipped_only_where_it_cannot_change_the_answer():
    """Clear cases skip the model's forward; the answers are those of scoring every question with it (a scorer of
    arbitrary beliefs in [LM_FLOOR, 0], and beliefs below the floor count as the floor)."""
    import hashlib

    from orchestrator import extract as X

    def belief(span: str) -> float:  # arbitrary but fixed per span, over the whole range the term can take
        return -25.0 * hashlib.sha256(span.encode()).digest()[0] / 255

    from training.documents import kinds_of, render

    cases = [(text, q) for text in (RECEIPT, BOOK, TICKET, LETTER, STAFF)
             for q in ("What is the total?", "How much was the oat milk?", "Who wrote this book?",
                       "What is the seat number?", "Where does the flight go?", "What is the gate?",
                       "When was it sent?", "Who is the sender?", "What is the phone number?",
                       "What is the reference number?", "Which publisher released it?", "What time is boarding?")]
    for kind in kinds_of("dev"):  # the strings the documents draw, one per line: many near and clear cases
        for seed in range(12):
            doc = render(kind, seed)
            cases += [("\n".join(doc.text), qa.question) for qa in doc.questions]
    calls = {"n": 0}

    def scorer(spans):
        calls["n"] += 1
        return [belief(s) for s in spans]

    def scored_by_hand(question: str, text: str) -> str | None:
        """The answer with the model's term added to every candidate's evidence score, outside the code under
        test: the evidence scores come from a run without a model."""
        plain = X.extract_answer(question, text)
        if plain.answer is None:
            return None
        best = max(plain.candidates, key=lambda c: c.score + 0.15 * max(belief(c.text), X.LM_FLOOR))
        return best.text

    skipping = [X.extract_answer(q, text, scorer) for text, q in cases]
    skipped = len(cases) - calls["n"]
    assert [r.answer for r in skipping] == [scored_by_hand(q, text) for text, q in cases]
    assert 0 < skipped < len(cases)  # some questions were decided without the model, not all
    assert any("the label evidence decides" in r.reason for r in skipping)


@pytest.mark.parametrize("question,answer", [
    ("What is the flight number?", "PV 389"),                # a carrier's code and its number are one code
    ("Which gate does the flight leave from?", "B3"),         # the noun after which names the field
    ("Which seat is the passenger in?", "14C"),
    ("What date is the flight?", "2024-09-07"),
])
def test_a_flight_code_and_the_field_a_which_question_names(question, answer):
    text = ("BOARDING PASS\nPassenger: | OKAFOR/SAMUEL\nFrom: | Malmo | To: | Bergen\n"
            "Flight: PV 389 | Date: | 2024-09-07\nGate: | B3 | Seat: | 14C")
    assert extract_answer(question, text, require_type=True).answer == answer


def test_the_head_noun_of_which_or_what_outweighs_the_other_words():
    assert label_match("Which gate does the flight leave from?", "Gate") > \
        label_match("Which gate does the flight leave from?", "Flight")
    # a measure or a category word after what/which names no field: the label need not repeat it
    assert label_match("What percentage of moisture was measured?", "Moisture content") >= 0.4
    assert extract_answer("What kind of zone is it?", "SPEED LIMIT\n30\nSchool zone").answer != "30"


def test_a_header_row_read_with_a_small_letter_of_the_same_shape_still_heads_columns():
    """OCR read "TO" as "To" ('o' and 'O' differ only in size): the row still heads the row below column by column."""
    text = "TRAIN TICKET\nFROM | To\nBilbao | Seville\nDATE\n2 Nov 2024\nPASSENGER\nIvan Tanaka"
    assert extract_answer("Where does the journey start?", text, require_type=True).answer == "Bilbao"
    assert extract_answer("What is the destination?", text, require_type=True).answer == "Seville"
    from orchestrator.extract import _is_heading

    assert _is_heading("To") and _is_heading("SEAT") and _is_heading("Cos")  # C, O, S: the same shapes small
    assert not _is_heading("Stop") and not _is_heading("to") and not _is_heading("Seville")


def test_a_space_ocr_put_beside_a_decimal_point_is_closed():
    text = "COPPER GROCERY\nOlive oil | 7. 47\nGreen tea | 3 .95\nTOTAL | $24. 13"
    assert extract_answer("How much was the olive oil?", text, require_type=True).answer == "7.47"
    assert extract_answer("How much was the green tea?", text, require_type=True).answer == "3.95"
    assert extract_answer("What was the total?", text, require_type=True).answer == "$24.13"

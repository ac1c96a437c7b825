"""Visual QA with expert tools, plus a custom expert, in a few lines.

    python examples/visual_qa_with_experts.py
"""
from operator import itemgetter
from pathlib import Path

from tools import expert

from orchestrator import VisualQAPipeline
from orchestrator.experts import default_pipeline_experts

HERE = Path(__file__).parent


@expert(register=False)
def dominant_colour(image) -> str:
    """Tells the dominant colour of the image."""
    r, g, b = image.resize((1, 1)).getpixel((0, 0))  # the image arrives as an RGB PIL image
    return f"Dominant colour: rgb({r},{g},{b})"


pipeline = VisualQAPipeline("smollm2-135m", experts=[*default_pipeline_experts(), dominant_colour])

result = pipeline.invoke({"image": HERE / "receipt.png", "question": "What is the total on this receipt?"})
print(result.router["chosen"], "->", result.answer)  # ['ocr', 'dominant_colour'] -> The total ... is 18.55.
print([line for line in result.experts["ocr"].splitlines() if "TOTAL" in line])  # what OCR contributed

answer_only = pipeline | itemgetter("answer")          # a Runnable like any other
print(answer_only.invoke({"image": HERE / "receipt.png", "question": "What is the name of the shop?"}))

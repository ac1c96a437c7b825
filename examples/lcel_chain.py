"""A LangChain (LCEL) chain around the chat model, with an image as a standard content block.

    python examples/lcel_chain.py [IMAGE]

With the offline default (SmolLM2-135M, no CLIP weights) the image cannot become a visual prefix, so the chain
answers from the text and `response_metadata["visual_prefix"]` says so; `VisualQAPipeline` (see
visual_qa_with_experts.py) adds OCR/detection observations, which is what makes a 135M model answer correctly.
"""
import base64
import sys
from pathlib import Path

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from orchestrator import ChatLlamaAdapterV2

image = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "receipt.png")
prompt = ChatPromptTemplate.from_messages([
    ("system", "You are a concise assistant."),
    ("human", [{"type": "text", "text": "{question}"},
               {"type": "image", "base64": "{image}", "mime_type": "image/png"}]),
])
chain = prompt | ChatLlamaAdapterV2(model="smollm2-135m", max_tokens=48) | StrOutputParser()
print(chain.invoke({"question": "Write one sentence about receipts.",
                    "image": base64.b64encode(image.read_bytes()).decode()}))

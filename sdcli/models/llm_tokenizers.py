"""The tokenizers of the flow families' LLM text encoders (Qwen, Mistral Small 3)."""

from __future__ import annotations

# Mistral Small 3's chat template cut down to what diffusers' Flux2Pipeline gives it: a system turn and user turns
# whose content is a string or a list of text blocks.
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = message['content'] | map(attribute='text') | join('') %}{% endif %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]{% endif %}{% endfor %}")

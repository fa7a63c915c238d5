"""The README's promises: its first two commands, and its Configuration table matches Settings."""

from __future__ import annotations

from pathlib import Path

from core.config import settings_markdown

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.strip().splitlines() == ["make demo", "make test"]


def test_configuration_table_is_generated_from_settings():
    assert settings_markdown() in README, "run `crackscan settings` and paste it into README.md"

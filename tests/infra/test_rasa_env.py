"""The Rasa 3.6 environment (Python 3.10, apart from the project's) works: version, train, parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.rasa import rasa_environment, rasa_executable

pytestmark = pytest.mark.rasa
TINY_BOT = Path(__file__).parent / "tiny_bot"


def test_rasa_version_from_its_own_environment() -> None:
    result = subprocess.run([rasa_executable(), "--version"], capture_output=True, text=True,
                            env=rasa_environment(), timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Rasa Version      :         3.6.21" in result.stdout
    assert "Python Version    :         3.10" in result.stdout


@pytest.mark.slow
def test_tiny_bot_trains_and_understands(tmp_path: Path) -> None:
    bot = tmp_path / "bot"
    shutil.copytree(TINY_BOT, bot)
    train = subprocess.run(
        [rasa_executable(), "train", "--fixed-model-name", "tiny", "--out", "models"],
        cwd=bot, capture_output=True, text=True, env=rasa_environment(), timeout=600,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    model = bot / "models" / "tiny.tar.gz"
    assert model.is_file()

    # Load the trained model in the Rasa environment's Python and parse a message.
    python = rasa_executable().with_name("python")
    script = (
        "import asyncio, json\n"
        "from rasa.core.agent import Agent\n"
        f"agent = Agent.load({str(model)!r})\n"
        "print(json.dumps(asyncio.run(agent.parse_message('hello there'))['intent']))\n"
    )
    parse = subprocess.run([python, "-c", script], cwd=bot, capture_output=True, text=True,
                           env=rasa_environment(), timeout=300)
    assert parse.returncode == 0, parse.stderr[-3000:]
    assert '"name": "greet"' in parse.stdout.strip().splitlines()[-1]

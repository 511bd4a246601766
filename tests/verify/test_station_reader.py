"""The station fed by a real reader driver: a Cognex DMCC simulator over TCP answers each trigger."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.verify.station import VerifySettings, observe_read
from agent.verify.verdict import Verdict
from drivers.readers.base import ReaderProtocolError, read_with_deadline
from drivers.readers.dataman import DataMan, DataManSettings
from drivers.sim.readers import DmccSim, Outcome, ReaderSimServer
from tests.verify.test_station import close_line, open_line


def test_reader_strings_through_the_dmcc_driver_become_verdicts(tmp_path: Path) -> None:
    settings = VerifySettings(camera_at=2, read_window=0, gate_at=5, max_consecutive_rejects=20)

    async def scenario() -> None:
        line, plc = await open_line(tmp_path, 8, settings)
        sim = DmccSim()
        answers: list[str | Outcome] = [line.codes[0], line.codes[0], "NOT-OURS", Outcome.NO_READ,
                                        Outcome.SILENCE, Outcome.GARBAGE, line.codes[6], line.codes[7]]
        sim.results.extend(answers)
        server = ReaderSimServer(sim)
        await server.start_tcp()
        async with server, DataMan(DataManSettings(url=server.url, timeout_s=0.2)) as reader:
            for _ in range(8 + settings.gate_at + settings.confirm_margin + 1):
                line.sim.model.step()
                seq = line.sim.model.counter
                if seq <= 8:
                    line.station.printed(seq, line.codes[seq - 1])
                await line.station.tick()
                at_camera = line.station.tracker.at_camera()
                if at_camera is not None and at_camera <= 8:
                    try:
                        result = await read_with_deadline(reader)  # silence -> a no-read at the deadline
                    except ReaderProtocolError:  # garbage: no observation; the window closes unread
                        continue
                    await line.station.observe(observe_read(at_camera, result))
            await line.station.flush()  # verdicts are reported once committed
        v = {s: j.verdict for s, j in line.verdicts.items() if s <= 8}
        assert v == {1: Verdict.GOOD, 2: Verdict.DUPLICATE, 3: Verdict.FOREIGN, 4: Verdict.NO_READ,
                     5: Verdict.NO_READ, 6: Verdict.NO_READ, 7: Verdict.GOOD, 8: Verdict.GOOD}
        assert [s for s in line.sim.model.rejected if s <= 8] == [2, 3, 4, 5, 6]
        assert sim.triggers == 8
        await close_line(line, plc)

    asyncio.run(scenario())

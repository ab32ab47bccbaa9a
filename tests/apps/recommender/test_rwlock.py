import threading
import time

from apps.recommender.rwlock import ReadWriteLock


def test_readers_share_and_a_writer_waits_for_them_and_excludes_new_ones() -> None:
    lock = ReadWriteLock()
    events: list[str] = []
    both_reading = threading.Barrier(2, timeout=5)

    def reader(name: str) -> None:
        with lock.reading():
            both_reading.wait()  # would time out if readers excluded each other
            time.sleep(0.05)
            events.append(f"{name} done")

    def writer() -> None:
        with lock.writing():
            events.append("write")

    readers = [threading.Thread(target=reader, args=(n,)) for n in ("a", "b")]
    for thread in readers:
        thread.start()
    time.sleep(0.01)
    write = threading.Thread(target=writer)
    write.start()
    for thread in [*readers, write]:
        thread.join(5)
    assert events[-1] == "write" and sorted(events[:2]) == ["a done", "b done"]

    # while a writer waits, a new reader queues behind it
    order: list[str] = []
    release_writer = threading.Event()

    def waiting_writer() -> None:
        with lock.writing():
            order.append("w")
            release_writer.wait(5)

    def late_reader() -> None:
        with lock.reading():
            order.append("r")

    threads = [threading.Thread(target=waiting_writer), threading.Thread(target=late_reader)]
    with lock.reading():
        threads[0].start()
        time.sleep(0.05)
        threads[1].start()
        time.sleep(0.05)
        assert order == []  # the writer waits for this reader, the late reader for the writer
    time.sleep(0.05)
    assert order == ["w"]
    release_writer.set()
    for thread in threads:
        thread.join(5)
    assert order == ["w", "r"]

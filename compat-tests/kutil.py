"""Small helpers around the stock clients (confluent-kafka, kcat, kafkajs) used by the tests."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"


@dataclass
class Rec:
    """A consumed record, reduced to what the tests compare."""
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list | None
    ts_type: int
    ts: int

    def kvh(self):
        return (self.key, self.value, self.headers)


# ------------------------------------------------------------------------- console (HTTP)
def console_call(broker, method: str, path: str, body=None, token: str | None = None,
                 headers: dict | None = None) -> tuple[int, dict]:
    """A JSON request to the broker's console: (status, parsed JSON body; {} when empty).
    `body` is sent as JSON, or as is when it is bytes (to send malformed JSON); `token`
    goes in `Authorization: Bearer`."""
    import urllib.error
    import urllib.request
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    h = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        h["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(broker.console + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, (json.loads(raw) if raw else {})


# ------------------------------------------------------------------------- confluent-kafka
def producer(bootstrap: str, **conf) -> Producer:
    c = {"bootstrap.servers": bootstrap, "linger.ms": 5, "socket.timeout.ms": 10000,
         "message.timeout.ms": 20000}
    # keyword arguments may use _ for . (linger_ms); log_level is spelled with _ in librdkafka
    c.update({k if k == "log_level" else k.replace("_", "."): v for k, v in conf.items()})
    return Producer(c)


def produce_all(p: Producer, topic: str, records, timeout: float = 20.0, check: bool = True):
    """Produce dicts (value=, key=, headers=, partition=, timestamp=) and flush.

    Returns [(err, partition, offset)] in the order of `records`. With check, every
    delivery must have succeeded."""
    results: list = [None] * len(records)

    def cb_for(i):
        def cb(err, msg):
            results[i] = (err, msg.partition(), msg.offset() if err is None else None)
        return cb

    for i, r in enumerate(records):
        kw = dict(r)
        while True:
            try:
                p.produce(topic, on_delivery=cb_for(i), **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"{left} messages not delivered within {timeout}s"
    if check:
        bad = [(i, r) for i, r in enumerate(results) if r is None or r[0] is not None]
        assert not bad, f"delivery failures: {bad[:5]}"
    return results


def consumer(bootstrap: str, **conf) -> Consumer:
    c = {"bootstrap.servers": bootstrap,
         "group.id": "compat-" + uuid.uuid4().hex[:8],   # required by the client; never used
         "enable.auto.commit": False,
         "enable.auto.offset.store": False,
         "auto.offset.reset": "earliest",
         "enable.partition.eof": True,
         "socket.timeout.ms": 10000}
    c.update(conf)
    return Consumer(c)


def to_rec(m) -> Rec:
    ts_type, ts = m.timestamp()
    return Rec(m.partition(), m.offset(), m.key(), m.value(), m.headers(), ts_type, ts)


def consume(bootstrap: str, topic: str, partition: int = 0, offset: int = 0,
            count: int | None = None, timeout: float = 20.0, conf: dict | None = None) -> list[Rec]:
    """Read one partition with manual assignment (no consumer group).

    Without `count`, reads until the end of the partition (partition EOF); with it,
    until `count` records arrived. Fails on a partition error or on timeout."""
    c = consumer(bootstrap, **(conf or {}))
    out: list[Rec] = []
    global_errors = []
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        done = False
        while not done:
            if count is not None and len(out) >= count:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timeout reading {topic}[{partition}] from {offset}: got {len(out)} records"
                    f" (want {count if count is not None else 'up to EOF'}); client errors: {global_errors[:5]}")
            for m in c.consume(num_messages=1000, timeout=0.2):
                if m.error():
                    code = m.error().code()
                    if code == KafkaError._PARTITION_EOF:
                        if count is None:
                            done = True
                            break
                        continue
                    if m.topic() is None or code in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                        global_errors.append(m.error())
                        continue
                    raise KafkaException(m.error())
                out.append(to_rec(m))
    finally:
        c.close()
    return out


def admin(bootstrap: str, **conf) -> AdminClient:
    c = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000}
    c.update(conf)
    return AdminClient(c)


def create_topic(bootstrap_or_admin, name: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = 15.0) -> None:
    a = admin(bootstrap_or_admin) if isinstance(bootstrap_or_admin, str) else bootstrap_or_admin
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                   config=config or {})], request_timeout=timeout)
    fs[name].result(timeout)
    wait_topic(a, name, partitions)


def wait_topic(a: AdminClient, name: str, partitions: int | None = None, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(timeout=5)
        t = md.topics.get(name)
        if t is not None and t.error is None and (partitions is None or len(t.partitions) == partitions):
            return t
        last = t
        time.sleep(0.1)
    raise AssertionError(f"topic {name} not visible with {partitions} partitions: {last}")


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def kafka_error_code(exc: BaseException) -> int | None:
    """The KafkaError code carried by an exception from a future/delivery, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code()
    return None


# ------------------------------------------------------------------------- kcat
def kcat_bin() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    assert path, "kcat is not installed (apt-get install kcat)"
    return path


def kcat(args: list[str], input: bytes | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
    cp = subprocess.run([kcat_bin(), *args], input=input, capture_output=True, timeout=timeout)
    return cp


# ------------------------------------------------------------------------- kafkajs
def kafkajs(command: str, bootstrap: str, args: dict, timeout: float = 60.0):
    """Run compat-tests/node/kafkajs-tool.js COMMAND and return its JSON output."""
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (NODE_DIR / "node_modules" / "kafkajs").is_dir(), \
        "kafkajs is not installed: run `npm ci` in compat-tests/node"
    env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")
    cp = subprocess.run([node, str(NODE_DIR / "kafkajs-tool.js"), command, bootstrap, json.dumps(args)],
                        capture_output=True, timeout=timeout, env=env, cwd=str(NODE_DIR))
    if cp.returncode != 0:
        raise AssertionError(f"kafkajs {command} failed ({cp.returncode}):\nstdout: {cp.stdout.decode()[-3000:]}\n"
                             f"stderr: {cp.stderr.decode()[-3000:]}")
    return json.loads(cp.stdout.decode().strip().splitlines()[-1])

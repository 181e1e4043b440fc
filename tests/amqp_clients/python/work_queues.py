"""RabbitMQ tutorial 2, "Work Queues" (new_task.py and worker.py), with pika.

    work_queues.py new_task HOST:PORT COUNT STOPS
    work_queues.py worker HOST:PORT [--die-after N]

new_task publishes COUNT tasks ("task-I" followed by I % 3 dots) to the
durable queue 'task_queue' as persistent messages, then STOPS "stop"
messages (one per worker that should end).

A worker declares the durable queue, takes one task at a time
(basic_qos(prefetch_count=1)), "works" 50 ms per dot (the tutorial sleeps
one second per dot) and acknowledges it when done. It prints `ready` once
consuming, `done TASK redelivered=BOOL` after each acknowledgement, and on a
"stop" message cancels its consumer, acknowledges the stop and reports what
it did. With --die-after N it completes N tasks, then kills itself with
SIGKILL on receiving the next one (printing `dying TASK` first), leaving that
task unacknowledged.
"""

import os
import signal
import sys
import time

import pika

from tutorial import connect, fail, report, say

WORK_PER_DOT_S = 0.05


def task_body(i):
    return f"task-{i}" + "." * (i % 3)


def new_task(addr, count, stops):
    connection = connect(addr)
    channel = connection.channel()
    channel.queue_declare(queue="task_queue", durable=True)
    messages = [task_body(i) for i in range(count)] + ["stop"] * stops
    for message in messages:
        channel.basic_publish(
            exchange="",
            routing_key="task_queue",
            body=message,
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
        )
    connection.close()
    report(sent=count, stops=stops)


def worker(addr, die_after):
    connection = connect(addr)
    channel = connection.channel()
    channel.queue_declare(queue="task_queue", durable=True)
    done = []
    redelivered = []

    def callback(ch, method, properties, body):
        task = body.decode()
        if task == "stop":
            ch.stop_consuming()
            ch.basic_ack(delivery_tag=method.delivery_tag)
            return
        if task in done:
            fail(f"task {task} delivered to this worker again after it was acknowledged")
        if die_after is not None and len(done) == die_after:
            say(f"dying {task}")
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(task.count(".") * WORK_PER_DOT_S)
        ch.basic_ack(delivery_tag=method.delivery_tag)
        done.append(task)
        if method.redelivered:
            redelivered.append(task)
        say(f"done {task} redelivered={method.redelivered}")

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue="task_queue", on_message_callback=callback)
    say("ready")
    channel.start_consuming()
    connection.close()
    report(done=done, redelivered=redelivered)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "new_task":
        new_task(args[1], int(args[2]), int(args[3]))
    elif len(args) == 2 and args[0] == "worker":
        worker(args[1], None)
    elif len(args) == 4 and args[0] == "worker" and args[2] == "--die-after":
        worker(args[1], int(args[3]))
    else:
        fail("usage: work_queues.py new_task HOST:PORT COUNT STOPS | worker HOST:PORT [--die-after N]")

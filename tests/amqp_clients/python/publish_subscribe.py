"""RabbitMQ tutorial 3, "Publish/Subscribe" (emit_log.py and
receive_logs.py), with pika.

    publish_subscribe.py receive HOST:PORT COUNT
    publish_subscribe.py emit HOST:PORT COUNT
    publish_subscribe.py check_gone HOST:PORT QUEUE...

A receiver declares the fanout exchange 'logs', an exclusive server-named
queue (queue_declare(queue='', exclusive=True)), binds it, prints
`ready QUEUE` once consuming, and takes messages until "end"; it fails
unless it got every log line once, in order. The emitter publishes COUNT
log lines, then "end". check_gone fails unless each named queue is gone
(a passive declare is refused with 404), as exclusive queues are once their
connection closed.
"""

import sys

import pika

from tutorial import check_sequence, connect, fail, report, say


def line(i):
    return f"log line #{i}"


def emit(addr, count):
    connection = connect(addr)
    channel = connection.channel()
    channel.exchange_declare(exchange="logs", exchange_type="fanout")
    for i in range(count):
        channel.basic_publish(exchange="logs", routing_key="", body=line(i))
    channel.basic_publish(exchange="logs", routing_key="", body="end")
    connection.close()
    report(sent=count)


def receive(addr, count):
    connection = connect(addr)
    channel = connection.channel()
    channel.exchange_declare(exchange="logs", exchange_type="fanout")
    result = channel.queue_declare(queue="", exclusive=True)
    queue_name = result.method.queue
    if not queue_name:
        fail("queue.declare-ok named no queue")
    channel.queue_bind(exchange="logs", queue=queue_name)
    received = []

    def callback(ch, method, properties, body):
        text = body.decode()
        if text == "end":
            ch.stop_consuming()
        else:
            received.append(text)

    channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
    say(f"ready {queue_name}")
    channel.start_consuming()
    check_sequence(f"queue {queue_name}", received, [line(i) for i in range(count)])
    connection.close()
    report(queue=queue_name, received=len(received))


def check_gone(addr, queues):
    connection = connect(addr)
    for name in queues:
        channel = connection.channel()
        try:
            channel.queue_declare(queue=name, passive=True)
            fail(f"exclusive queue {name} still exists after its connection closed")
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                fail(f"passive declare of {name}: expected 404, got {e.reply_code} {e.reply_text}")
    connection.close()
    report(gone=queues)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "emit":
        emit(args[1], int(args[2]))
    elif len(args) == 3 and args[0] == "receive":
        receive(args[1], int(args[2]))
    elif len(args) >= 3 and args[0] == "check_gone":
        check_gone(args[1], args[2:])
    else:
        fail("usage: publish_subscribe.py emit|receive HOST:PORT COUNT | check_gone HOST:PORT QUEUE...")

"""RabbitMQ tutorial 1, "Hello World!" (send.py and receive.py), with pika.

    hello_world.py send HOST:PORT COUNT
    hello_world.py receive HOST:PORT COUNT

Both declare the queue 'hello'. The sender publishes COUNT messages to the
default exchange; the receiver consumes with auto_ack, stops after COUNT,
and fails unless it got each message once, in order, and the queue is then
empty.
"""

import sys

from tutorial import check_sequence, connect, fail, report, say


def body(i):
    return f"Hello World! #{i}"


def send(addr, count):
    connection = connect(addr)
    channel = connection.channel()
    channel.queue_declare(queue="hello")
    for i in range(count):
        channel.basic_publish(exchange="", routing_key="hello", body=body(i))
    connection.close()
    report(sent=count)


def receive(addr, count):
    connection = connect(addr)
    channel = connection.channel()
    channel.queue_declare(queue="hello")
    received = []

    def callback(ch, method, properties, data):
        received.append(data.decode())
        if len(received) == count:
            ch.stop_consuming()

    channel.basic_consume(queue="hello", on_message_callback=callback, auto_ack=True)
    say("ready")
    channel.start_consuming()
    check_sequence("hello", received, [body(i) for i in range(count)])
    left = channel.queue_declare(queue="hello", passive=True).method.message_count
    if left != 0:
        fail(f"{left} messages left in 'hello' after all {count} were received")
    connection.close()
    report(received=len(received))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("send", "receive"):
        fail("usage: hello_world.py send|receive HOST:PORT COUNT")
    (send if sys.argv[1] == "send" else receive)(sys.argv[2], int(sys.argv[3]))

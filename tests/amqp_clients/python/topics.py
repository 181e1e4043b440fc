"""RabbitMQ tutorial 5, "Topics" (emit_log_topic.py and
receive_logs_topic.py), with pika.

    topics.py receive HOST:PORT EXPECTED BINDING_KEY...
    topics.py emit HOST:PORT END_KEY ROUTING_KEY...

The topic exchange 'topic_logs'. A receiver binds an exclusive server-named
queue once per binding key, prints `ready QUEUE`, and takes messages until
"end"; it fails unless it got exactly the routing keys in EXPECTED (joined
with ','), each once, in order. The emitter publishes one message per
ROUTING_KEY (its body is the key), then "end" with END_KEY.
"""

import sys

from tutorial import check_sequence, connect, fail, report, say


def emit(addr, end_key, keys):
    connection = connect(addr)
    channel = connection.channel()
    channel.exchange_declare(exchange="topic_logs", exchange_type="topic")
    for key in keys:
        channel.basic_publish(exchange="topic_logs", routing_key=key, body=key)
    channel.basic_publish(exchange="topic_logs", routing_key=end_key, body="end")
    connection.close()
    report(sent=len(keys))


def receive(addr, expected, binding_keys):
    connection = connect(addr)
    channel = connection.channel()
    channel.exchange_declare(exchange="topic_logs", exchange_type="topic")
    result = channel.queue_declare(queue="", exclusive=True)
    queue_name = result.method.queue
    for binding_key in binding_keys:
        channel.queue_bind(exchange="topic_logs", queue=queue_name, routing_key=binding_key)
    received = []

    def callback(ch, method, properties, body):
        text = body.decode()
        if text == "end":
            ch.stop_consuming()
            return
        if text != method.routing_key:
            fail(f"message {text!r} arrived with routing key {method.routing_key!r}")
        received.append(text)

    channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
    say(f"ready {queue_name}")
    channel.start_consuming()
    check_sequence(f"binding keys {binding_keys}", received, [e for e in expected.split(",") if e])
    connection.close()
    report(queue=queue_name, received=received)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 4 and args[0] == "emit":
        emit(args[1], args[2], args[3:])
    elif len(args) >= 4 and args[0] == "receive":
        receive(args[1], args[2], args[3:])
    else:
        fail("usage: topics.py receive HOST:PORT EXPECTED BINDING_KEY... | emit HOST:PORT END_KEY ROUTING_KEY...")

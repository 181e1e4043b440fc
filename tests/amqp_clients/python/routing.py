"""RabbitMQ tutorial 4, "Routing" (emit_log_direct.py and
receive_logs_direct.py), with pika.

    routing.py receive HOST:PORT EXPECTED SEVERITY...
    routing.py emit HOST:PORT END_SEVERITY SEVERITY:MESSAGE...

The direct exchange 'direct_logs'. A receiver binds an exclusive
server-named queue once per severity, prints `ready QUEUE`, and takes
messages until "end"; it fails unless it got exactly EXPECTED (messages
joined with ','), in order. The emitter publishes each MESSAGE with its
SEVERITY as routing key, then "end" with END_SEVERITY.
"""

import sys

from tutorial import check_sequence, connect, fail, report, say


def emit(addr, end_severity, pairs):
    connection = connect(addr)
    channel = connection.channel()
    channel.exchange_declare(exchange="direct_logs", exchange_type="direct")
    for pair in pairs:
        severity, message = pair.split(":", 1)
        channel.basic_publish(exchange="direct_logs", routing_key=severity, body=message)
    channel.basic_publish(exchange="direct_logs", routing_key=end_severity, body="end")
    connection.close()
    report(sent=len(pairs))


def receive(addr, expected, severities):
    connection = connect(addr)
    channel = connection.channel()
    channel.exchange_declare(exchange="direct_logs", exchange_type="direct")
    result = channel.queue_declare(queue="", exclusive=True)
    queue_name = result.method.queue
    for severity in severities:
        channel.queue_bind(exchange="direct_logs", queue=queue_name, routing_key=severity)
    received = []

    def callback(ch, method, properties, body):
        text = body.decode()
        if text == "end":
            ch.stop_consuming()
        else:
            received.append(f"{method.routing_key}:{text}")

    channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
    say(f"ready {queue_name}")
    channel.start_consuming()
    check_sequence(f"severities {severities}", received, [e for e in expected.split(",") if e])
    connection.close()
    report(queue=queue_name, received=received)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 4 and args[0] == "emit":
        emit(args[1], args[2], args[3:])
    elif len(args) >= 4 and args[0] == "receive":
        receive(args[1], args[2], args[3:])
    else:
        fail("usage: routing.py receive HOST:PORT EXPECTED SEVERITY... | emit HOST:PORT END SEVERITY:MESSAGE...")

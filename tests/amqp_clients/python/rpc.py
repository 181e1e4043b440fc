"""RabbitMQ tutorial 6, "RPC" (rpc_server.py and rpc_client.py), with pika.

    rpc.py server HOST:PORT REQUESTS
    rpc.py client HOST:PORT N...

The server declares 'rpc_queue', takes one request at a time
(prefetch_count=1), answers fib(n) to the request's reply_to with its
correlation_id, acknowledges, prints `ready` once consuming and stops after
REQUESTS requests. The client (FibonacciRpcClient) consumes its exclusive
server-named callback queue, and for each N publishes a request with
reply_to and a fresh correlation_id, then waits for the answer; it fails on
a wrong answer or an answer with a correlation_id it never sent.
"""

import sys
import uuid

import pika

from tutorial import connect, fail, report, say


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def server(addr, requests):
    connection = connect(addr)
    channel = connection.channel()
    channel.queue_declare(queue="rpc_queue")
    served = []

    def on_request(ch, method, props, body):
        n = int(body)
        ch.basic_publish(
            exchange="",
            routing_key=props.reply_to,
            properties=pika.BasicProperties(correlation_id=props.correlation_id),
            body=str(fib(n)),
        )
        ch.basic_ack(delivery_tag=method.delivery_tag)
        served.append(n)
        if len(served) == requests:
            ch.stop_consuming()

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue="rpc_queue", on_message_callback=on_request)
    say("ready")
    channel.start_consuming()
    connection.close()
    report(served=len(served))


class FibonacciRpcClient:
    def __init__(self, addr):
        self.connection = connect(addr)
        self.channel = self.connection.channel()
        result = self.channel.queue_declare(queue="", exclusive=True)
        self.callback_queue = result.method.queue
        self.channel.basic_consume(queue=self.callback_queue, on_message_callback=self.on_response, auto_ack=True)
        self.sent_ids = set()
        self.response = None
        self.corr_id = None

    def on_response(self, ch, method, props, body):
        if props.correlation_id not in self.sent_ids:
            fail(f"answer with correlation_id {props.correlation_id!r}, which this client never sent")
        if self.corr_id == props.correlation_id:
            self.response = body

    def call(self, n):
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.sent_ids.add(self.corr_id)
        self.channel.basic_publish(
            exchange="",
            routing_key="rpc_queue",
            properties=pika.BasicProperties(reply_to=self.callback_queue, correlation_id=self.corr_id),
            body=str(n),
        )
        while self.response is None:
            self.connection.process_data_events(time_limit=None)
        return int(self.response)


def client(addr, numbers):
    fibonacci_rpc = FibonacciRpcClient(addr)
    for n in numbers:
        got = fibonacci_rpc.call(n)
        if got != fib(n):
            fail(f"fib({n}): got {got}, expected {fib(n)}")
    fibonacci_rpc.connection.close()
    report(calls=len(numbers), callback_queue=fibonacci_rpc.callback_queue)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "server":
        server(args[1], int(args[2]))
    elif len(args) >= 3 and args[0] == "client":
        client(args[1], [int(a) for a in args[2:]])
    else:
        fail("usage: rpc.py server HOST:PORT REQUESTS | client HOST:PORT N...")

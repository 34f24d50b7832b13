"""What AWS users run, against moto: boto3 sets up queues, topics and
bucket notifications, sends events to SQS the ways producers do, and
uploads objects. Used by the end-to-end tests of the sqs source and of the
objects source's SQS notifications (aws_sources.rs).

    aws_client.py ENDPOINT setup-sqs NAME
        a queue and an SNS topic delivering to it (envelopes, not raw);
        prints {"queue_url", "topic_arn"}
    aws_client.py ENDPOINT setup-bucket-notifications NAME
        a bucket whose object-created events go to an SNS topic that
        delivers to a queue; prints {"queue_url", "bucket"}
    aws_client.py ENDPOINT send QUEUE_URL TOPIC_ARN LINES_FILE SECONDS
        sends every line, spread over about SECONDS: single-event messages
        (SendMessageBatch, ten per call), NDJSON bodies, JSON arrays and
        SNS publishes, by turns; prints {"messages", "calls"}
    aws_client.py ENDPOINT upload BUCKET DIR SECONDS
        uploads every file of DIR (sorted) as landing/NAME, spread over
        about SECONDS; every fifth one as a multipart upload
    aws_client.py ENDPOINT backlog QUEUE_URL
        prints the queue's approximate counts
    aws_client.py ENDPOINT setup-kinesis NAME SHARDS
        a data stream of SHARDS shards; prints {"stream", "shards"}
    aws_client.py ENDPOINT put-records STREAM LINES_FILE SECONDS
        puts every line as a record (PutRecords, a hundred per call; the
        partition key is the line's "id", so one document's changes share a
        shard), spread over about SECONDS; prints {"records", "calls"}
    aws_client.py ENDPOINT setup-dynamodb NAME
        a table keyed by "pk" (a string) with a NEW_AND_OLD_IMAGES stream;
        prints {"table", "stream_arn"}
    aws_client.py ENDPOINT write-items TABLE OPS SEED SECONDS
        OPS random writes over 120 keys, spread over about SECONDS: whole
        items put (every attribute type), updates that set, remove and
        change nested fields, deletes; then prints {"ops", "items"}: the
        table's final items as plain JSON (scanned), by key
"""

import base64
import json
import os
import random
import sys
import time
from decimal import Decimal

import boto3

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
REGION = "us-east-1"


def client(endpoint, service):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def queue_arn(sqs, url):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attrs["Attributes"]["QueueArn"]


def queue_behind_topic(endpoint, name):
    sqs, sns = client(endpoint, "sqs"), client(endpoint, "sns")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    topic = sns.create_topic(Name=name)["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn(sqs, url))
    return url, topic


def setup_sqs(endpoint, name):
    url, topic = queue_behind_topic(endpoint, name)
    print(json.dumps({"queue_url": url, "topic_arn": topic}))


def setup_bucket_notifications(endpoint, name):
    url, topic = queue_behind_topic(endpoint, name)
    s3 = client(endpoint, "s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    print(json.dumps({"queue_url": url, "bucket": name}))


def is_object(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def messages_of(lines):
    """One message per line that is a JSON object; any other line rides in
    the NDJSON body of the message before it (after an object line, no two
    lines parse as one JSON value, so each stays a line)."""
    messages = []
    for line in lines:
        if is_object(line) or not messages:
            messages.append([line])
        else:
            messages[-1].append(line)
    return messages


def send(endpoint, url, topic, lines_file, seconds):
    sqs, sns = client(endpoint, "sqs"), client(endpoint, "sns")
    with open(lines_file) as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    groups = messages_of(lines)
    runs = [groups[i : i + 30] for i in range(0, len(groups), 30)]
    calls = sent = 0
    pause = seconds / max(1, len(runs))
    for turn, run in enumerate(runs):
        shape = turn % 4
        if shape == 0:
            # Single events (with any line riding along), ten per call.
            for i in range(0, len(run), 10):
                entries = [
                    {"Id": str(j), "MessageBody": "\n".join(m)} for j, m in enumerate(run[i : i + 10])
                ]
                out = sqs.send_message_batch(QueueUrl=url, Entries=entries)
                assert not out.get("Failed"), out
                calls += 1
                sent += len(entries)
        elif shape == 1:
            body = "\n".join(line for m in run for line in m)
            sqs.send_message(QueueUrl=url, MessageBody=body)
            calls += 1
            sent += 1
        elif shape == 2 and all(len(m) == 1 for m in run):
            body = "[\n" + ",\n".join(m[0] for m in run) + "\n]"
            sqs.send_message(QueueUrl=url, MessageBody=body)
            calls += 1
            sent += 1
        else:
            body = "\n".join(line for m in run for line in m)
            sns.publish(TopicArn=topic, Message=body)
            calls += 1
            sent += 1
        time.sleep(pause)
    print(json.dumps({"messages": sent, "calls": calls}))


def upload(endpoint, bucket, folder, seconds):
    s3 = client(endpoint, "s3")
    names = sorted(os.listdir(folder))
    pause = seconds / max(1, len(names))
    for i, name in enumerate(names):
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        key = "landing/" + name
        if i % 5 == 4:
            # One part is allowed to be small: S3 sends two records for it.
            started = s3.create_multipart_upload(Bucket=bucket, Key=key)
            part = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=started["UploadId"], PartNumber=1, Body=data
            )
            s3.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=started["UploadId"],
                MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
            )
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=data)
        time.sleep(pause)
    print(json.dumps({"objects": len(names)}))


def backlog(endpoint, url):
    attrs = client(endpoint, "sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    print(json.dumps({k: int(v) for k, v in attrs.items()}))


def setup_kinesis(endpoint, name, shards):
    kinesis = client(endpoint, "kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=int(shards))
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    listed = kinesis.list_shards(StreamName=name)["Shards"]
    print(json.dumps({"stream": name, "shards": len(listed)}))


def put_records(endpoint, stream, lines_file, seconds):
    kinesis = client(endpoint, "kinesis")
    with open(lines_file) as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    chunks = [lines[i : i + 100] for i in range(0, len(lines), 100)]
    pause = seconds / max(1, len(chunks))
    for chunk in chunks:
        records = [
            {"Data": line.encode(), "PartitionKey": str(json.loads(line).get("id", i))}
            for i, line in enumerate(chunk)
        ]
        out = kinesis.put_records(StreamName=stream, Records=records)
        assert out["FailedRecordCount"] == 0, out
        time.sleep(pause)
    print(json.dumps({"records": len(lines), "calls": len(chunks)}))


def setup_dynamodb(endpoint, name):
    dynamodb = client(endpoint, "dynamodb")
    out = dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = out["TableDescription"]["LatestStreamArn"]
    print(json.dumps({"table": name, "stream_arn": arn}))


def random_item(rng, key):
    """A whole item in DynamoDB's typed form, with every attribute type."""
    item = {
        "pk": {"S": key},
        "name": {"S": rng.choice(["Ann", "Bo", "Cy", "Di"]) + str(rng.randrange(100))},
        "count": {"N": str(rng.randrange(-1000, 1000))},
        "price": {"N": rng.choice(["2.5", "0.1", "19.99", "1E+2"])},
        "active": {"BOOL": rng.random() < 0.5},
        "address": {"M": {"city": {"S": rng.choice(["Oslo", "Lima", "Pune"])}, "zip": {"S": str(rng.randrange(10000))}}},
        "scores": {"L": [{"N": str(rng.randrange(10))} for _ in range(rng.randrange(4))]},
    }
    if rng.random() < 0.3:
        item["big"] = {"N": "1234567890123456789012345678"}
    if rng.random() < 0.3:
        item["tags"] = {"SS": sorted({rng.choice("abcdef") for _ in range(3)})}
    if rng.random() < 0.3:
        item["blob"] = {"B": bytes(rng.randrange(256) for _ in range(4))}
    if rng.random() < 0.2:
        item["nothing"] = {"NULL": True}
    return item


def random_update(rng):
    """An UpdateItem's expression and values: set, remove, nested changes."""
    kind = rng.randrange(5)
    if kind == 0:
        return "SET #n = :v", {"#n": "name"}, {":v": {"S": "renamed" + str(rng.randrange(100))}}
    if kind == 1:
        return "ADD #c :one", {"#c": "count"}, {":one": {"N": "1"}}
    if kind == 2:
        return "REMOVE #a.#z", {"#a": "address", "#z": "zip"}, None
    if kind == 3:
        return "REMOVE #p, #s", {"#p": "price", "#s": "scores"}, None
    return "SET #a.#z = :z, #e = :e", {"#a": "address", "#z": "zip", "#e": "extra"}, {
        ":z": {"S": "Z" + str(rng.randrange(100))},
        ":e": {"M": {"deep": {"L": [{"S": "x"}, {"N": "7"}]}}},
    }


def plain_number(text):
    """DynamoDB's number as Sluice promises it: a JSON number where exact."""
    try:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    except ValueError:
        pass
    as_float = float(text)
    if Decimal(repr(as_float)) == Decimal(text):
        return as_float
    return text


def plain_map(attributes):
    """A map as its document holds it: a NULL attribute is absent (a JSON
    merge patch cannot store null)."""
    converted = {k: plain(v) for k, v in attributes.items()}
    return {k: v for k, v in converted.items() if v is not None}


def plain(value):
    (kind, inner), = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        return plain_number(inner)
    if kind in ("BOOL",):
        return inner
    if kind == "NULL":
        return None
    if kind == "M":
        return plain_map(inner)
    if kind == "L":
        return [plain(v) for v in inner]
    if kind == "SS":
        return list(inner)
    if kind == "NS":
        return [plain_number(n) for n in inner]
    if kind == "B":
        return base64.b64encode(inner).decode()
    if kind == "BS":
        return [base64.b64encode(b).decode() for b in inner]
    raise ValueError(kind)


def write_items(endpoint, table, ops, seed, seconds):
    dynamodb = client(endpoint, "dynamodb")
    rng = random.Random(seed)
    keys = [f"item-{i}" for i in range(120)]
    pause = seconds / max(1, ops)
    for _ in range(ops):
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.45:
            dynamodb.put_item(TableName=table, Item=random_item(rng, key))
        elif roll < 0.8:
            expression, names, values = random_update(rng)
            call = {"TableName": table, "Key": {"pk": {"S": key}}, "UpdateExpression": expression,
                    "ExpressionAttributeNames": names}
            if values:
                call["ExpressionAttributeValues"] = values
            try:
                dynamodb.update_item(**call)
            except dynamodb.exceptions.ClientError:
                pass  # a nested path on an item without its map
        else:
            dynamodb.delete_item(TableName=table, Key={"pk": {"S": key}})
        time.sleep(pause)
    items = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            items[item["pk"]["S"]] = plain_map(item)
    print(json.dumps({"ops": ops, "items": items}))


def main():
    endpoint, command, *args = sys.argv[1:]
    if command == "setup-sqs":
        setup_sqs(endpoint, *args)
    elif command == "setup-bucket-notifications":
        setup_bucket_notifications(endpoint, *args)
    elif command == "send":
        url, topic, lines_file, seconds = args
        send(endpoint, url, topic, lines_file, float(seconds))
    elif command == "upload":
        bucket, folder, seconds = args
        upload(endpoint, bucket, folder, float(seconds))
    elif command == "setup-kinesis":
        setup_kinesis(endpoint, *args)
    elif command == "put-records":
        stream, lines_file, seconds = args
        put_records(endpoint, stream, lines_file, float(seconds))
    elif command == "setup-dynamodb":
        setup_dynamodb(endpoint, *args)
    elif command == "write-items":
        table, ops, seed, seconds = args
        write_items(endpoint, table, int(ops), int(seed), float(seconds))
    elif command == "backlog":
        backlog(endpoint, *args)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()

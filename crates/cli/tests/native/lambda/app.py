"""A Lambda handler run by AWS's own runtime interface client
(`python3 -m awslambdaric app.handler`, awslambdaric from PyPI): answers an
HTTP request in the format 2.0 shape, logs a CloudEvent, fails on /fail."""

import json


def handler(event, context):
    if "specversion" in event:
        print("cloudevent", event["type"], json.dumps(event.get("data")), flush=True)
        return {"handled": event["id"]}
    if event["rawPath"] == "/fail":
        raise ValueError("failing on purpose")
    if event["rawPath"] == "/plain":
        return {"just": "json"}
    return {
        "statusCode": 201,
        "headers": {"x-from": "lambda", "content-type": "application/json"},
        "cookies": ["flavour=oat"],
        "body": json.dumps({
            "method": event["requestContext"]["http"]["method"],
            "path": event["rawPath"],
            "query": event["rawQueryString"],
            "parameters": event.get("queryStringParameters"),
            "body": event.get("body"),
            "base64": event["isBase64Encoded"],
            "function": context.function_name,
            "request_id": context.aws_request_id,
            "time_left": context.get_remaining_time_in_millis() > 0,
        }),
    }

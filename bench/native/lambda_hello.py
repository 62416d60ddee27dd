"""The Lambda handler bench/process.sh calls warm (awslambdaric)."""


def handler(event, context):
    return {"statusCode": 200, "body": "hello\n"}

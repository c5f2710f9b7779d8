#!/bin/sh
# Run as the image's command: says hello, and what the build's RUN step left.
echo "$GREETING"
cat /etc/built

#!/bin/sh
cat /app/@@

"""backends/transformers"""
